// Datasets into training examples: files are read into records (data/records.hpp), records into samples by their
// format (data/formats.hpp), samples through a template into token ids with a mask of the trained tokens. Templates:
// Alpaca or Dolly for instruction records, the model's chat template for conversations (and, on request, for
// instruction records), none for prompt/completion pairs and plain text. By default only responses / assistant
// turns are trained, always with the end-of-turn or EOS token that lets the model learn to stop; train_on_inputs
// trains everything, assistant_turns=last only the final turn. A deterministic split holds records out.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "data/formats.hpp"
#include "data/records.hpp"
#include "llmft/tokenizer.hpp"

namespace llmft::data {

struct Example {
  std::vector<int32_t> ids;
  std::vector<uint8_t> trained;
};

class Templater {
 public:
  // template_name: "auto" picks by format (alpaca, dolly, chat for conversations, none for completions and text).
  Templater(const Tokenizer& tok, const DataOptions& d, Format format);
  ~Templater();
  const std::string& name() const { return name_; }
  // False (with a reason and detail) when the template cannot render this record.
  bool encode(const Sample& s, Example* out, std::string* reason, std::string* detail) const;
  // The prompt that asks the model for the sample's answer, and the reference answer.
  std::vector<int32_t> prompt_ids(const Sample& s) const;
  static std::string reference(const Sample& s);
  static std::string question(const Sample& s);  // a one-line description for reports
  std::vector<int32_t> stop_ids() const;
  // Identity of what this templating produces (part of a shard's preparation fingerprint).
  std::string fingerprint() const;

 private:
  struct Impl;
  const Tokenizer& tok_;
  std::string name_;
  bool train_on_inputs_, last_turn_only_;
  std::unique_ptr<Impl> impl_;
};

struct DatasetReport {
  int64_t records = 0, used = 0, truncated = 0, dropped = 0, tokens = 0, trained_tokens = 0, bytes = 0;
  Problems problems;
  double seconds = 0;
};

struct Dataset {
  std::vector<Example> train, eval;
  std::vector<Sample> eval_samples;  // the held-out records, for generation samples
  DatasetReport report;
  std::string template_name;
};

// Progress of a long read: records done so far, bytes of input, and the total when known (0 otherwise).
using Progress = std::function<void(int64_t records, int64_t bytes, int64_t total_bytes)>;

// Reads, templates and tokenizes data.path (or the generated dataset when empty) on `threads` threads.
Dataset build_dataset(const DataOptions& d, const Tokenizer& tok, uint64_t seed, size_t threads = 0,
                      const Progress& progress = nullptr);

// Resolves data.path, data.format, data.columns/tags and data.dataset_info/data.dataset into files and a spec.
std::vector<std::string> dataset_files(const DataOptions& d, FormatSpec* spec);

}  // namespace llmft::data
