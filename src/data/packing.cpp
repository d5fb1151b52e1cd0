#include "data/packing.hpp"

#include <algorithm>
#include <numeric>
#include <set>

#include "util/check.hpp"

namespace llmft::data {

double PackPlan::utilisation() const {
  return rows.empty() ? 0.0 : static_cast<double>(tokens) / static_cast<double>(rows.size() * seq_len);
}

PackPlan pack_best_fit_decreasing(const std::vector<int64_t>& lengths, int64_t seq_len) {
  PackPlan plan;
  plan.seq_len = seq_len;
  std::vector<int32_t> order(lengths.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return lengths[a] > lengths[b]; });
  // Open rows by remaining room; the lowest row index first among equals, for determinism.
  std::set<std::pair<int64_t, int64_t>> open;
  for (int32_t i : order) {
    const int64_t len = lengths[static_cast<size_t>(i)];
    LLMFT_CHECK(len > 0 && len <= seq_len, Status::kInternal, "example {} has {} tokens for rows of {}", i, len, seq_len);
    auto it = open.lower_bound({len, -1});
    int64_t row, room;
    if (it == open.end()) {
      row = static_cast<int64_t>(plan.rows.size());
      plan.rows.emplace_back();
      room = seq_len;
    } else {
      room = it->first;
      row = it->second;
      open.erase(it);
    }
    plan.rows[static_cast<size_t>(row)].push_back(i);
    plan.tokens += len;
    if (room - len > 0) open.insert({room - len, row});
  }
  return plan;
}

PackPlan pack_subset_fill(const std::vector<int64_t>& lengths, int64_t seq_len) {
  PackPlan plan;
  plan.seq_len = seq_len;
  // Examples by length, each length's examples in index order (taken from the back: reverse them).
  std::vector<std::vector<int32_t>> by_len(static_cast<size_t>(seq_len) + 1);
  for (size_t i = lengths.size(); i-- > 0;) {
    const int64_t len = lengths[i];
    LLMFT_CHECK(len > 0 && len <= seq_len, Status::kInternal, "example {} has {} tokens for rows of {}", i, len, seq_len);
    by_len[static_cast<size_t>(len)].push_back(static_cast<int32_t>(i));
  }
  std::vector<int64_t> present;  // lengths with examples left, descending
  for (int64_t len = seq_len; len > 0; --len)
    if (!by_len[static_cast<size_t>(len)].empty()) present.push_back(len);
  std::vector<int32_t> from(static_cast<size_t>(seq_len) + 1), copies(static_cast<size_t>(seq_len) + 1);
  std::vector<int64_t> reached;
  while (!present.empty()) {
    std::vector<int32_t> row;
    const int64_t first = present.front();
    row.push_back(by_len[static_cast<size_t>(first)].back());
    by_len[static_cast<size_t>(first)].pop_back();
    if (by_len[static_cast<size_t>(first)].empty()) present.erase(present.begin());
    const int64_t room = seq_len - first;
    // Bounded knapsack: from[s] = the length that last reached sum s (0: s = 0, -1: unreached).
    std::fill(from.begin(), from.begin() + room + 1, -1);
    from[0] = 0;
    int64_t best = 0;
    for (int64_t len : present) {
      if (len > room || best == room) continue;
      const auto count = static_cast<int32_t>(by_len[static_cast<size_t>(len)].size());
      std::fill(copies.begin(), copies.begin() + room + 1, 0);
      for (int64_t s = len; s <= room; ++s) {
        if (from[static_cast<size_t>(s)] != -1 || from[static_cast<size_t>(s - len)] == -1) continue;
        int32_t used = from[static_cast<size_t>(s - len)] == len ? copies[static_cast<size_t>(s - len)] : 0;
        if (used >= count) continue;
        from[static_cast<size_t>(s)] = static_cast<int32_t>(len);
        copies[static_cast<size_t>(s)] = used + 1;
        best = std::max(best, s);
      }
    }
    for (int64_t s = best; s > 0;) {  // walk the chosen lengths back
      const int64_t len = from[static_cast<size_t>(s)];
      auto& bucket = by_len[static_cast<size_t>(len)];
      row.push_back(bucket.back());
      bucket.pop_back();
      if (bucket.empty()) present.erase(std::find(present.begin(), present.end(), len));
      s -= len;
    }
    plan.tokens += first + best;
    plan.rows.push_back(std::move(row));
  }
  return plan;
}

PackPlan pack_rows(const std::vector<int64_t>& lengths, int64_t seq_len) {
  std::vector<bool> seen(static_cast<size_t>(seq_len) + 1, false);
  double distinct = 0;
  for (int64_t len : lengths)
    if (len > 0 && len <= seq_len && !seen[static_cast<size_t>(len)]) seen[static_cast<size_t>(len)] = true, ++distinct;
  // Rows needed x (distinct lengths x room) bounds the knapsack's work.
  double rows = 0;
  for (int64_t len : lengths) rows += static_cast<double>(len);
  rows = rows / static_cast<double>(seq_len) + 1;
  if (rows * distinct * static_cast<double>(seq_len) > kFillBudget) return pack_best_fit_decreasing(lengths, seq_len);
  return pack_subset_fill(lengths, seq_len);
}

PackPlan pack_padded(const std::vector<int64_t>& lengths, int64_t seq_len) {
  PackPlan plan;
  plan.seq_len = seq_len;
  for (size_t i = 0; i < lengths.size(); ++i) {
    plan.rows.push_back({static_cast<int32_t>(i)});
    plan.tokens += lengths[i];
  }
  return plan;
}

}  // namespace llmft::data
