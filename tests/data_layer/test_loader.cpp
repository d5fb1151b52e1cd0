// The loader: the same seed gives the same rows in the same order; every epoch visits every row once, in an order
// that changes per epoch; the ranks of a data-parallel group never read the same row in an epoch; an optimizer
// step covers the same rows whatever the split over ranks and micro-batches; the position is saved and restored
// exactly.
#include <gtest/gtest.h>
#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <set>

#include "data/loader.hpp"
#include "data/prepared.hpp"

using namespace llmft;

namespace {

// 23 one-document rows; the document of row r is {r}, so a micro-batch names its rows.
struct Rows {
  std::vector<data::Example> examples;
  std::unique_ptr<data::RowSource> source;
  explicit Rows(int n) {
    for (int r = 0; r < n; ++r) examples.push_back({{r}, {1}});
    data::PackPlan plan = data::pack_padded(std::vector<int64_t>(static_cast<size_t>(n), 1), 4);
    source = data::rows_in_memory(examples, plan);
  }
};

std::vector<int32_t> rows_of(const data::MicroBatch& mb) {
  std::vector<int32_t> out;
  for (const auto& d : mb.ids) out.push_back(d[0]);
  return out;
}

// The rows each optimizer step covers (sorted), over `steps` steps, for a split into `world` ranks x `micro`
// rows per micro-batch x `accum` micro-batches per step.
std::vector<std::vector<int32_t>> steps_of(const data::RowSource& src, int world, int64_t micro, int accum, int steps,
                                           uint64_t seed) {
  std::vector<data::PackedLoader> loaders;
  for (int r = 0; r < world; ++r) loaders.emplace_back(src, micro, r, world, seed);
  std::vector<std::vector<int32_t>> out;
  for (int s = 0; s < steps; ++s) {
    std::vector<int32_t> step;
    for (int a = 0; a < accum; ++a)
      for (auto& l : loaders) {
        auto rows = rows_of(l.next());
        step.insert(step.end(), rows.begin(), rows.end());
      }
    std::sort(step.begin(), step.end());
    out.push_back(step);
  }
  return out;
}

}  // namespace

TEST(Loader, SameSeedSameOrderAndEveryEpochVisitsEveryRowOnce) {
  Rows rows(23);
  data::PackedLoader a(*rows.source, 1, 0, 1, 5), b(*rows.source, 1, 0, 1, 5), c(*rows.source, 1, 0, 1, 6);
  std::vector<int32_t> ea, eb, ec;
  for (int i = 0; i < 3 * 23; ++i) {
    ea.push_back(rows_of(a.next())[0]);
    eb.push_back(rows_of(b.next())[0]);
    ec.push_back(rows_of(c.next())[0]);
  }
  EXPECT_EQ(ea, eb);
  EXPECT_NE(ea, ec);
  for (int e = 0; e < 3; ++e) {
    std::vector<int32_t> epoch(ea.begin() + e * 23, ea.begin() + (e + 1) * 23);
    std::sort(epoch.begin(), epoch.end());
    for (int r = 0; r < 23; ++r) EXPECT_EQ(epoch[static_cast<size_t>(r)], r);
  }
  EXPECT_NE(std::vector<int32_t>(ea.begin(), ea.begin() + 23), std::vector<int32_t>(ea.begin() + 23, ea.begin() + 46));
  EXPECT_DOUBLE_EQ(a.epoch(), 3.0);
  EXPECT_EQ(a.position(), (std::pair<int64_t, int64_t>{3, 0}));
}

TEST(Loader, RanksReadDisjointRowsInEveryEpoch) {
  Rows rows(24);
  for (int world : {2, 4}) {
    std::vector<data::PackedLoader> loaders;
    for (int r = 0; r < world; ++r) loaders.emplace_back(*rows.source, 3, r, world, 11);
    for (int epoch = 0; epoch < 2; ++epoch) {
      std::map<int32_t, int> owner;
      for (int step = 0; step < 24 / (3 * world); ++step)
        for (int r = 0; r < world; ++r)
          for (int32_t row : rows_of(loaders[static_cast<size_t>(r)].next())) {
            EXPECT_EQ(owner.count(row), 0u) << "row " << row << " read by ranks " << owner[row] << " and " << r;
            owner[row] = r;
          }
      EXPECT_EQ(owner.size(), 24u) << "world " << world << " epoch " << epoch;
    }
  }
}

TEST(Loader, AStepCoversTheSameRowsWhateverTheSplit) {
  Rows rows(37);
  // Global batch of 8 rows: 1 rank x 8, 1 rank x 2 x 4 accumulation, 2 ranks x 2 x 2, 4 ranks x 2 x 1, 8 x 1 x 1.
  const auto ref = steps_of(*rows.source, 1, 8, 1, 12, 3);
  EXPECT_EQ(steps_of(*rows.source, 1, 2, 4, 12, 3), ref);
  EXPECT_EQ(steps_of(*rows.source, 2, 2, 2, 12, 3), ref);
  EXPECT_EQ(steps_of(*rows.source, 4, 2, 1, 12, 3), ref);
  EXPECT_EQ(steps_of(*rows.source, 8, 1, 1, 12, 3), ref);
  EXPECT_EQ(steps_of(*rows.source, 4, 1, 2, 12, 3), ref);
}

TEST(Loader, PositionIsRestoredExactly) {
  Rows rows(19);
  data::PackedLoader a(*rows.source, 2, 1, 2, 9);
  for (int i = 0; i < 13; ++i) a.next();
  const data::LoaderState saved = a.state();
  const auto position = a.position();
  std::vector<std::vector<int32_t>> after;
  for (int i = 0; i < 20; ++i) after.push_back(rows_of(a.next()));
  data::PackedLoader b(*rows.source, 2, 1, 2, 9);  // a new process, after a restart
  b.restore(saved);
  EXPECT_EQ(b.position(), position);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(rows_of(b.next()), after[static_cast<size_t>(i)]) << "micro-batch " << i;
}

// Elastic resume: 2 ranks train 5 steps of 4 rows and stop; the job continues on 1 rank (2 x 2 accumulation) or on
// 4 ranks (1 row each). The rest of the epoch is exactly the rows not yet trained, each once, in the order the
// uninterrupted 2-rank job would have trained them step by step.
TEST(Loader, AResumeOnAnotherWorldSizeTrainsExactlyTheRowsLeft) {
  Rows rows(40);
  const uint64_t seed = 5;
  std::vector<data::PackedLoader> two;
  for (int r = 0; r < 2; ++r) two.emplace_back(*rows.source, 2, r, 2, seed);
  std::set<int32_t> trained;
  for (int s = 0; s < 5; ++s)
    for (auto& l : two)
      for (int32_t id : rows_of(l.next())) EXPECT_TRUE(trained.insert(id).second) << "row " << id << " twice";
  const data::LoaderState saved = two[0].state();
  EXPECT_EQ(saved.rows, 20);
  EXPECT_EQ(two[1].state().rows, saved.rows) << "every rank holds the same global position";
  const auto uninterrupted = steps_of(*rows.source, 2, 2, 1, 15, seed);  // steps 1-15 (epoch 1 ends after step 10)
  for (const auto& [world, micro, accum] : std::vector<std::tuple<int, int64_t, int>>{{1, 2, 2}, {4, 1, 1}}) {
    SCOPED_TRACE(fmt::format("resumed on {} rank(s)", world));
    std::vector<data::PackedLoader> loaders;
    for (int r = 0; r < world; ++r) {
      loaders.emplace_back(*rows.source, micro, r, world, seed);
      loaders.back().restore(saved);
    }
    std::set<int32_t> rest = trained;
    for (int s = 5; s < 15; ++s) {
      std::vector<int32_t> step;
      for (int a = 0; a < accum; ++a)
        for (auto& l : loaders) {
          auto got = rows_of(l.next());
          step.insert(step.end(), got.begin(), got.end());
        }
      if (s < 10)
        for (int32_t id : step) EXPECT_TRUE(rest.insert(id).second) << "row " << id << " trained twice in epoch 1";
      std::sort(step.begin(), step.end());
      EXPECT_EQ(step, uninterrupted[static_cast<size_t>(s)]) << "step " << s + 1;
    }
    EXPECT_EQ(rest.size(), 40u) << "every row of the epoch trained once";
  }
}

TEST(Loader, BadArgumentsAreErrors) {
  Rows rows(3);
  EXPECT_ANY_THROW(data::PackedLoader(*rows.source, 0, 0, 1, 1));
  EXPECT_ANY_THROW(data::PackedLoader(*rows.source, 1, 2, 2, 1));
  std::vector<data::Example> none;
  auto empty = data::rows_in_memory(none, data::PackPlan{});
  EXPECT_ANY_THROW(data::PackedLoader(*empty, 1, 0, 1, 1));
}
