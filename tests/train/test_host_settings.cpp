// What a host chooses for one Trainer or Generator stays with it: two trainers on two threads log to their own sinks
// (and nothing to the process-wide one), ranks' levels are theirs, libtorch's thread count is the trainer's
// (train.threads) during its calls and the host's again after each, and the process-wide log settings are untouched.
#include <gtest/gtest.h>

#include <ATen/Parallel.h>

#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "llmft/config.hpp"
#include "llmft/error.hpp"
#include "llmft/generator.hpp"
#include "llmft/log.hpp"
#include "llmft/trainer.hpp"
#include "test_support.hpp"

namespace llmft {
namespace {

struct Captured {
  std::mutex mu;
  std::vector<std::pair<LogLevel, std::string>> messages;
  LogSink sink() {
    return [this](LogLevel l, const std::string& m) {
      std::lock_guard<std::mutex> lk(mu);
      messages.emplace_back(l, m);
    };
  }
  bool any(const std::string& needle) {
    std::lock_guard<std::mutex> lk(mu);
    for (const auto& [l, m] : messages)
      if (m.find(needle) != std::string::npos) return true;
    return false;
  }
};

Config job(const std::string& out, int threads, int records = 32) {
  return load_config("", {"model.path=" + test::data_path("models/stories260K-hf"), "train.mode=lora",
                          "data.synthetic_records=" + std::to_string(records), "data.seq_len=128", "train.max_steps=4", "log.every=1",
                          "generate.num_samples=0", "checkpoint.every=0", "train.resume=never",
                          "train.threads=" + std::to_string(threads), "output.dir=" + out});
}

TEST(HostSettings, TwoTrainersOnTwoThreadsLogApartAndLeaveProcessSettingsAlone) {
  LLMFT_REQUIRE_DATA("models/stories260K-hf/model.safetensors");
  Captured process_wide, a, b;
  set_log_sink(process_wide.sink());
  set_log_level(LogLevel::kDebug);  // so that any message that escaped a trainer's scope would be seen here
  auto train = [](Captured* into, const std::string& out, int threads, int records, int* threads_during,
                  int* threads_after) {
    // What this host thread had. (libtorch gives a thread, at its first parallel query, the count last set by any
    // thread; the host's thread makes that query before it sets its own, as a host that set its count earlier has.)
    (void)at::get_num_threads();
    at::set_num_threads(3);
    TrainerOptions o;
    o.log_sink = into->sink();
    o.log_level = LogLevel::kInfo;
    int after = 3;  // the count seen after each call: the host's, unless one left its own behind
    auto after_call = [&] {
      if (at::get_num_threads() != 3) after = at::get_num_threads();
    };
    auto t = Trainer::create(job(out, threads, records), o);
    after_call();
    int during = 0;
    t->run([&](const StepStats&) {
      during = at::get_num_threads();
      return false;
    });
    after_call();
    t->evaluate();
    after_call();
    t->finish();
    after_call();
    *threads_during = during;
    *threads_after = after;
  };
  int during_a = 0, after_a = 0, during_b = 0, after_b = 0;
  std::thread ta(train, &a, test::temp_dir("host-a"), 1, 32, &during_a, &after_a);
  std::thread tb(train, &b, test::temp_dir("host-b"), 2, 40, &during_b, &after_b);
  ta.join();
  tb.join();
  set_log_sink(nullptr);
  set_log_level(LogLevel::kInfo);
  EXPECT_TRUE(a.any("trainable params") && a.any("'loss'")) << "trainer a logged nothing of its own";
  EXPECT_TRUE(b.any("trainable params") && b.any("'loss'")) << "trainer b logged nothing of its own";
  EXPECT_TRUE(a.any("(32 records)") && !a.any("(40 records)")) << "trainer a received b's messages";
  EXPECT_TRUE(b.any("(40 records)") && !b.any("(32 records)")) << "trainer b received a's messages";
  EXPECT_TRUE(process_wide.messages.empty()) << process_wide.messages.front().second;
  EXPECT_EQ(during_a, 1);
  EXPECT_EQ(during_b, 2);
  EXPECT_EQ(after_a, 3) << "a call left its thread count behind";
  EXPECT_EQ(after_b, 3) << "a call left its thread count behind";
}

TEST(HostSettings, GeneratorLogsWhereToldAndRestoresThreads) {
  LLMFT_REQUIRE_DATA("models/stories260K-hf/model.safetensors");
  Captured own, process_wide;
  set_log_sink(process_wide.sink());
  set_log_level(LogLevel::kDebug);
  at::set_num_threads(2);
  Config c = job(test::temp_dir("host-gen"), 1);
  c.generate.max_new_tokens = 4;
  GeneratorOptions o;
  o.log_sink = own.sink();
  o.log_level = LogLevel::kDebug;
  auto g = Generator::create(c, o);
  const std::string answer = g->answer("Once upon a time");
  EXPECT_EQ(at::get_num_threads(), 2);
  GenerateParams p;
  p.max_new_tokens = 2;
  EXPECT_LE(g->continue_ids(g->prompt_ids("hi"), p).size(), 2u);
  p.top_p = 0;
  EXPECT_THROW(g->answer("hi", p), Error);
  set_log_sink(nullptr);
  set_log_level(LogLevel::kInfo);
  EXPECT_TRUE(process_wide.messages.empty()) << process_wide.messages.front().second;
  EXPECT_TRUE(own.any("generate: ")) << "the generator's line did not reach its own sink";
}

TEST(HostSettings, AccessTokensNeverReachASink) {
  Captured got;
  set_log_sink(got.sink());
  const std::string token = "hf_" + std::string("aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789");
  log_message(LogLevel::kWarn, "HF_TOKEN=" + token + " and https://user:" + token + "@huggingface.co, twice: " + token);
  log_message(LogLevel::kWarn, "layer_hf_proj and hf_short stay as they are");
  set_log_sink(nullptr);
  ASSERT_EQ(got.messages.size(), 2u);
  EXPECT_EQ(got.messages[0].second, "HF_TOKEN=hf_*** and https://user:hf_***@huggingface.co, twice: hf_***");
  EXPECT_EQ(got.messages[1].second, "layer_hf_proj and hf_short stay as they are");
}

}  // namespace
}  // namespace llmft
