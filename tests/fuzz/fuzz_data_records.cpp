// Fuzzes the dataset readers end to end: the input is one dataset file (its first byte picks the file kind and
// the record format, the rest is the file's bytes) read, parsed, templated with a byte-level tokenizer, tokenized
// and packed by data::build_dataset, whose only allowed failure is llmft::Error (no usable records, data.strict).
// Conversation formats are converted to samples (to_sample) without a chat template.
#include <unistd.h>

#include <cstdint>
#include <string>

#include "../data_layer/data_support.hpp"  // tiny_tokenizer: one token per byte
#include "data/dataset.hpp"
#include "data/formats.hpp"
#include "data/packing.hpp"
#include "data/records.hpp"
#include "llmft/error.hpp"
#include "util/file.hpp"

namespace {

const char* kFormats[] = {"alpaca", "dolly", "prompt_completion", "text", "sharegpt", "messages"};
const char* kSuffixes[] = {".json", ".jsonl", ".json.gz", ".jsonl.gz"};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const llmft::Tokenizer tok = llmft::test::tiny_tokenizer();
  static const std::string dir = [] {
    std::string d = "/tmp/llmft-fuzz-data-" + std::to_string(getpid());
    llmft::make_dirs(d);
    return d;
  }();
  if (size < 1) return 0;
  const uint8_t pick = data[0];
  const std::string format = kFormats[(pick & 0x0f) % 6];
  const std::string path = dir + "/d" + kSuffixes[(pick >> 4) & 3];
  const bool strict = (pick & 0x40) != 0, drop = (pick & 0x80) != 0;
  llmft::write_file_atomic(path, std::string_view(reinterpret_cast<const char*>(data + 1), size - 1));
  llmft::data::DataOptions d;
  d.path = path;
  d.format = llmft::data::parse_format(format);
  d.seq_len = 64;
  d.eval_count = 1;
  d.strict = strict;
  d.overlong = drop ? llmft::data::Overlong::kDrop : llmft::data::Overlong::kTruncate;
  if (format == "sharegpt" || format == "messages") {
    // No chat template here: read and convert the records only.
    llmft::data::Problems problems;
    std::string text;
    const llmft::data::FormatSpec spec = llmft::data::FormatSpec::from_config(d);
    llmft::data::read_records(path, 0, text, problems, [&](const llmft::data::RawRecord& r) {
      llmft::data::OJson j = llmft::data::OJson::parse(r.json, nullptr, false);
      if (j.is_discarded()) return;
      llmft::data::Sample s;
      std::string reason, detail;
      (void)llmft::data::to_sample(j, spec, &s, &reason, &detail);
    });
  } else {
    try {
      llmft::data::Dataset ds = llmft::data::build_dataset(d, tok, 1, 1);
      std::vector<int64_t> lengths;
      for (const auto& e : ds.train) {
        if (e.ids.size() != e.trained.size() || e.ids.size() > 64) __builtin_trap();
        lengths.push_back(static_cast<int64_t>(e.ids.size()));
      }
      (void)llmft::data::pack_rows(lengths, 64);
    } catch (const llmft::Error&) {
    }
  }
  std::remove(path.c_str());
  return 0;
}
