#include "data/loader.hpp"

#include <algorithm>
#include <numeric>
#include <random>

#include "util/check.hpp"

namespace llmft::data {

int64_t MicroBatch::tokens() const {
  int64_t n = 0;
  for (const auto& d : ids) n += static_cast<int64_t>(d.size());
  return n;
}

PackedLoader::PackedLoader(const RowSource& rows, int64_t rows_per_micro, int rank, int world, uint64_t seed)
    : rows_(rows), rows_per_micro_(rows_per_micro), rank_(rank), world_(world), seed_(seed) {
  LLMFT_CHECK(rows.rows() > 0, Status::kInvalidArgument, "no training rows");
  LLMFT_CHECK(rows_per_micro >= 1, Status::kInvalidArgument, "train.micro_batch_size must be >= 1");
  LLMFT_CHECK(world >= 1 && rank >= 0 && rank < world, Status::kInvalidArgument, "rank {} of {}", rank, world);
}

void PackedLoader::plan_epoch(int64_t epoch) {
  order_.resize(static_cast<size_t>(rows_.rows()));
  std::iota(order_.begin(), order_.end(), 0);
  std::mt19937_64 rng(seed_ * 1000003ull + static_cast<uint64_t>(epoch));
  std::shuffle(order_.begin(), order_.end(), rng);
  planned_epoch_ = epoch;
}

int64_t PackedLoader::row_at(int64_t g) {
  const int64_t per = rows_.rows(), epoch = g / per;
  if (epoch != planned_epoch_) plan_epoch(epoch);
  return order_[static_cast<size_t>(g % per)];
}

MicroBatch PackedLoader::next() {
  MicroBatch mb;
  const int64_t base = state_.rows + rank_ * rows_per_micro_;
  for (int64_t r = 0; r < rows_per_micro_; ++r) rows_.row(row_at(base + r), mb.ids, mb.trained);
  state_.rows += world_ * rows_per_micro_;
  return mb;
}

double PackedLoader::epoch() const {
  return static_cast<double>(state_.rows) / static_cast<double>(rows_.rows());
}

std::pair<int64_t, int64_t> PackedLoader::position() const {
  const int64_t g = state_.rows;
  return {g / rows_.rows(), g % rows_.rows()};
}

}  // namespace llmft::data
