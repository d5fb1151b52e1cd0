// Serves micro-batches of packed rows to the ranks of a data-parallel group. Each epoch visits every row once, in
// an order shuffled by (seed, epoch). The row stream is cut into global micro-batches of micro_batch_size x world
// rows and rank r takes its own contiguous slice of each, so an optimizer step covers the same rows whatever the
// split across ranks and micro-batches, and two ranks never read the same row in an epoch. The position is one
// counter of the global row stream, saved and restored exactly with checkpoints; it does not depend on the world
// size, so a job resumed on another number of ranks reads exactly the rows that were left (for a global step of the
// same number of rows).
#pragma once

#include <cstdint>
#include <vector>

#include "data/prepared.hpp"

namespace llmft::data {

struct LoaderState {
  int64_t rows = 0;  // rows of the global stream served so far (all ranks together)
};

// One rank's micro-batch: the documents of its rows.
struct MicroBatch {
  std::vector<std::vector<int32_t>> ids;
  std::vector<std::vector<uint8_t>> trained;
  int64_t tokens() const;
};

class PackedLoader {
 public:
  PackedLoader(const RowSource& rows, int64_t rows_per_micro_batch, int rank, int world, uint64_t seed);
  MicroBatch next();
  int64_t rows_per_epoch() const { return rows_.rows(); }
  // Epochs consumed (fractional), counting every rank's rows; and the (epoch, row cursor) of the next read.
  double epoch() const;
  std::pair<int64_t, int64_t> position() const;
  LoaderState state() const { return state_; }
  void restore(const LoaderState& s) { state_ = s; }
  // The row index (into the source) of the global row stream position g.
  int64_t row_at(int64_t g);

 private:
  void plan_epoch(int64_t epoch);

  const RowSource& rows_;
  int64_t rows_per_micro_;
  int rank_, world_;
  uint64_t seed_;
  int64_t planned_epoch_ = -1;
  std::vector<int64_t> order_;
  LoaderState state_;
};

}  // namespace llmft::data
