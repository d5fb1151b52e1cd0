// Prepared data: a dataset tokenized, split and packed, stored as token shards (data/shards.hpp) with a
// manifest.json that lists them, records the tokenizer's and the preparation's fingerprints, the preparation report
// and some held-out records for generation samples. `llmft prep` writes it; `llmft train` opens it, or prepares a
// raw dataset into its cache first. The manifest is written last, so an interrupted preparation never looks
// complete.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/dataset.hpp"
#include "data/packing.hpp"
#include "data/shards.hpp"

namespace llmft::data {

// Rows to train on, whether in memory or in shards.
class RowSource {
 public:
  virtual ~RowSource() = default;
  virtual int64_t rows() const = 0;
  virtual int64_t tokens() const = 0;
  // The documents of row r (appended).
  virtual void row(int64_t r, std::vector<std::vector<int32_t>>& ids, std::vector<std::vector<uint8_t>>& trained) const = 0;
};

// Rows of `examples` (borrowed: they must outlive the source) as `plan` arranges them.
std::unique_ptr<RowSource> rows_in_memory(const std::vector<Example>& examples, PackPlan plan);

// Packs examples as configured: best-fit decreasing, or one per row.
PackPlan plan_rows(const std::vector<Example>& examples, int64_t seq_len, bool packing);

struct PreparedData {
  std::unique_ptr<RowSource> train;
  std::vector<Example> eval;
  std::vector<Sample> eval_samples;  // up to kSamplesKept, for generation before and after training
  std::string template_name;
  nlohmann::json manifest;
  static constexpr size_t kSamplesKept = 64;
};

// Writes dataset's train split (packed or padded) and eval split (one example per row) as shards of at most
// max_shard_tokens tokens under dir, then the manifest; returns the manifest.
nlohmann::json write_prepared(const Dataset& dataset, const std::string& dir, const Tokenizer& tok,
                              const DataOptions& d, const ShardIdentity& id, int64_t max_shard_tokens = 64 << 20);

bool is_prepared(const std::string& dir);
// Opens prepared data; refuses data prepared with another tokenizer (or, when given, other preparation settings).
PreparedData open_prepared(const std::string& dir, const Tokenizer& tok, const std::string& preparation = "");

// The fingerprint of a preparation: tokenizer, template, data settings and the dataset files' identity
// (path, size, modification time).
std::string preparation_fingerprint(const DataOptions& d, const Tokenizer& tok, const Templater& t, uint64_t seed);

nlohmann::json sample_to_json(const Sample& s);
Sample sample_from_json(const nlohmann::json& j);

}  // namespace llmft::data
