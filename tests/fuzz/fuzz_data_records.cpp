// Fuzzes the dataset readers end to end: the input is one dataset file (its first byte picks the file kind and
// the record format, the rest is the file's bytes) read, parsed, templated with a byte-level tokenizer, tokenized
// and packed by data::build_dataset, whose only allowed failure is llmft::Error (no usable records, data.strict).
// Conversation formats are converted to samples (to_sample) without a chat template.
#include <unistd.h>

#include <cstdint>
#include <string>

#include "data/dataset.hpp"
#include "data/formats.hpp"
#include "data/packing.hpp"
#include "data/records.hpp"
#include "llmft/error.hpp"
#include "util/file.hpp"

namespace {

llmft::Tokenizer byte_tokenizer() {
  nlohmann::json j = nlohmann::json::parse(R"({"added_tokens": [{"id": 256, "content": "<eos>", "special": true}],
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": false},
    "decoder": {"type": "ByteLevel"}, "model": {"type": "BPE", "vocab": {}, "merges": []}})");
  uint32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    const uint32_t cp = printable ? static_cast<uint32_t>(b) : next++;
    std::string s;
    if (cp < 0x80) {
      s += static_cast<char>(cp);
    } else {
      s += static_cast<char>(0xC0 | (cp >> 6));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    }
    j["model"]["vocab"][s] = b;
  }
  return llmft::Tokenizer::from_json(j.dump(), R"({"eos_token": "<eos>"})", "fuzz/tokenizer.json");
}

const char* kFormats[] = {"alpaca", "dolly", "prompt_completion", "text", "sharegpt", "messages"};
const char* kSuffixes[] = {".json", ".jsonl", ".json.gz", ".jsonl.gz"};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const llmft::Tokenizer tok = byte_tokenizer();
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
  llmft::DataSection d;
  d.path = path;
  d.format = format;
  d.seq_len = 64;
  d.eval_count = 1;
  d.strict = strict;
  d.overlong = drop ? "drop" : "truncate";
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
