// Packs examples into rows of at most seq_len tokens and serves micro-batches to the ranks of a data-parallel
// group. Each epoch shuffles the examples (seeded by seed and epoch) and packs them in that order. The row stream
// is cut into global batches of micro_batch_size x world rows per micro-batch; rank r takes its own slice of each,
// so the rows of an optimizer step are the same whatever the split across ranks and micro-batches.
// Documents stay whole inside a row (the model attends within each document only).
#pragma once

#include <cstdint>
#include <vector>

#include "data/dataset.hpp"

namespace llmft::data {

struct LoaderState {
  int64_t micro_batches = 0;  // micro-batches served to each rank so far
};

// One rank's micro-batch: the examples of its rows, in row order (borrowed from the loader's example list).
struct MicroBatch {
  std::vector<const Example*> examples;
  int64_t tokens() const;
};

class PackedLoader {
 public:
  PackedLoader(const std::vector<Example>& examples, int64_t seq_len, int64_t rows_per_micro_batch, int rank, int world,
               uint64_t seed);
  MicroBatch next();
  // Rows of one epoch (packing is deterministic, so every epoch has the same count).
  int64_t rows_per_epoch() const { return static_cast<int64_t>(rows_.size()); }
  // Epochs consumed (fractional), counting every rank's rows.
  double epoch() const;
  LoaderState state() const { return state_; }
  void restore(const LoaderState& s) { state_ = s; }

 private:
  const std::vector<int32_t>& row(int64_t global_row);  // example indices of a row
  void plan_epoch(int64_t epoch);

  const std::vector<Example>& examples_;
  int64_t seq_len_, rows_per_micro_;
  int rank_, world_;
  uint64_t seed_;
  int64_t planned_epoch_ = -1;
  std::vector<std::vector<int32_t>> rows_;
  LoaderState state_;
};

}  // namespace llmft::data
