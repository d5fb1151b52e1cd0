#include "data/loader.hpp"

#include <algorithm>
#include <numeric>
#include <random>

#include "util/check.hpp"

namespace llmft::data {

PackedLoader::PackedLoader(const std::vector<Example>& examples, int64_t seq_len, int64_t rows_per_micro, int rank,
                           int world, uint64_t seed)
    : examples_(examples), seq_len_(seq_len), rows_per_micro_(rows_per_micro), rank_(rank), world_(world), seed_(seed) {
  LLMFT_CHECK(!examples.empty(), Status::kInvalidArgument, "no training examples");
  LLMFT_CHECK(rows_per_micro >= 1, Status::kInvalidArgument, "train.micro_batch_size must be >= 1");
  plan_epoch(0);
}

// Greedy packing in shuffled order: an example goes into the current row if it fits, else starts a new one.
void PackedLoader::plan_epoch(int64_t epoch) {
  std::vector<int32_t> order(examples_.size());
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(seed_ * 1000003ull + static_cast<uint64_t>(epoch));
  std::shuffle(order.begin(), order.end(), rng);
  rows_.clear();
  int64_t used = seq_len_;
  for (int32_t i : order) {
    auto len = static_cast<int64_t>(examples_[static_cast<size_t>(i)].ids.size());
    if (used + len > seq_len_) {
      rows_.emplace_back();
      used = 0;
    }
    rows_.back().push_back(i);
    used += len;
  }
  planned_epoch_ = epoch;
}

const std::vector<int32_t>& PackedLoader::row(int64_t global_row) {
  int64_t per = static_cast<int64_t>(rows_.size());
  int64_t epoch = global_row / per;
  if (epoch != planned_epoch_) plan_epoch(epoch);
  return rows_[static_cast<size_t>(global_row % per)];
}

int64_t MicroBatch::tokens() const {
  int64_t n = 0;
  for (const Example* e : examples) n += static_cast<int64_t>(e->ids.size());
  return n;
}

MicroBatch PackedLoader::next() {
  MicroBatch mb;
  int64_t base = state_.micro_batches * world_ * rows_per_micro_ + rank_ * rows_per_micro_;
  for (int64_t r = 0; r < rows_per_micro_; ++r)
    for (int32_t i : row(base + r)) mb.examples.push_back(&examples_[static_cast<size_t>(i)]);
  ++state_.micro_batches;
  return mb;
}

double PackedLoader::epoch() const {
  return static_cast<double>(state_.micro_batches * world_ * rows_per_micro_) / static_cast<double>(rows_.size());
}

}  // namespace llmft::data
