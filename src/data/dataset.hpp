// Datasets into training examples: records are read (Alpaca JSON, or the generated dataset), put through a prompt
// template (Alpaca, Dolly, or the model's own chat template) and tokenized with a mask of the trained tokens
// (the response and its EOS; everything with data.train_on_inputs). A deterministic split holds records out for
// evaluation and the before/after samples.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/synthetic.hpp"
#include "llmft/config.hpp"
#include "llmft/tokenizer.hpp"

namespace llmft::data {

struct Example {
  std::vector<int32_t> ids;
  std::vector<uint8_t> trained;
};

struct ReadReport {
  int64_t records = 0, skipped = 0, truncated = 0;
  std::vector<std::string> problems;  // the first few, with file and position
};

struct ExampleSet {
  std::vector<Example> train, eval;
  std::vector<InstructionRecord> eval_records;  // source records of `eval`, for generation samples
  ReadReport report;
};

// Reads an Alpaca-format JSON array (or JSON lines) of {instruction, input, output}.
std::vector<InstructionRecord> read_alpaca(const std::string& path, ReadReport* report);

class PromptFormatter {
 public:
  PromptFormatter(const Tokenizer& tok, const std::string& template_name);
  ~PromptFormatter();
  // Training example of a record (response trained; with train_on_inputs, the prompt too).
  Example encode(const InstructionRecord& r, bool train_on_inputs) const;
  // Ids that ask the model to answer a record (the prompt, ending where the response begins).
  std::vector<int32_t> prompt_ids(const InstructionRecord& r) const;
  std::vector<int32_t> stop_ids() const;  // tokens that end a response

 private:
  struct Impl;
  const Tokenizer& tok_;
  std::string name_;
  std::unique_ptr<Impl> impl_;
};

ExampleSet build_examples(const DataSection& cfg, const Tokenizer& tok, uint64_t seed);

}  // namespace llmft::data
