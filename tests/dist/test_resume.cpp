// Resume of data-parallel jobs (Gloo, on this machine): a rank killed with SIGKILL, the job restarted with the same
// command, logs the same losses and ends with the same adapter as a job that was never interrupted, bit for bit; a
// 2-rank job stopped with SIGTERM continues on 1 rank and on 4 ranks (the same global batch, another ZeRO stage),
// training the rows that were left and ending within fp32 tolerance of the uninterrupted job.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include <fmt/format.h>

#include "dist/dist_support.hpp"
#include "io/safetensors.hpp"
#include "model/model_support.hpp"
#include "train/checkpoints.hpp"

namespace llmft::test {
namespace {

using Json = nlohmann::json;
constexpr const char* kModel = "models/stories260K-hf/model.safetensors";

std::vector<std::string> job_args(const std::string& out, double dropout) {
  return {"model.path=" + data_path("models/stories260K-hf"), "train.mode=lora", "data.synthetic_records=96",
          "data.seq_len=128", "train.max_steps=10", "generate.num_samples=0", "log.every=1", "checkpoint.every=2",
          "train.micro_batch_size=2", "dist.zero_stage=2", "dist.timeout_s=10", fmt::format("lora.dropout={}", dropout),
          "output.dir=" + out};
}

std::vector<int> finish(std::vector<Proc>& procs) {
  std::vector<int> codes;
  for (auto& p : procs) codes.push_back(wait_for(p, std::chrono::seconds(600)));
  return codes;
}

std::string logs(const std::string& prefix, int n) {
  std::string s;
  for (int r = 0; r < n; ++r) s += fmt::format("--- rank {}\n", r) + read_file(prefix + ".rank" + std::to_string(r) + ".log");
  return s;
}

TEST(DistResume, ARankKilledAndTheJobRestartedContinuesBitForBit) {
  LLMFT_REQUIRE_DATA(kModel);
  const std::string ref = temp_dir("dresume-ref");
  auto procs = start_world(2, job_args(ref, 0.1), ref);
  ASSERT_EQ(finish(procs), (std::vector<int>{0, 0})) << logs(ref, 2);
  std::mt19937 rng(std::random_device{}());
  const int k = std::uniform_int_distribution<int>(3, 9)(rng);
  SCOPED_TRACE(fmt::format("rank 1 killed after step {}", k));
  const std::string out = temp_dir("dresume-kill");
  procs = start_world(2, job_args(out, 0.1), out + ".1");
  wait_for_step(procs[0], k);
  ::kill(procs[1].pid, SIGKILL);
  const auto codes = finish(procs);
  EXPECT_NE(codes[0], 0) << "rank 0 must notice its peer is gone";
  procs = start_world(2, job_args(out, 0.1), out + ".2");
  ASSERT_EQ(finish(procs), (std::vector<int>{0, 0})) << logs(out + ".2", 2);
  const auto want = metric_records(ref), got = metric_records(out);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i], want[i]) << "record " << i;
  EXPECT_TRUE(read_file(path_join(out, "adapter/adapter_model.safetensors")) ==
              read_file(path_join(ref, "adapter/adapter_model.safetensors")));
}

// Full fine-tuning at ZeRO-3 (parameters, gradients and moments sharded): the checkpoint gathers them; the resumed
// job shards them again and ends with the same model, byte for byte.
TEST(DistResume, FullFineTuningAtZero3StoppedAndResumedBitForBit) {
  LLMFT_REQUIRE_DATA(kModel);
  auto args = [](const std::string& out) {
    std::vector<std::string> a = job_args(out, 0.0);
    for (const char* x : {"train.mode=full", "dist.zero_stage=3", "checkpoint.every=0"}) a.push_back(x);
    return a;
  };
  const std::string ref = temp_dir("dresume-full-ref");
  auto procs = start_world(2, args(ref), ref);
  ASSERT_EQ(finish(procs), (std::vector<int>{0, 0})) << logs(ref, 2);
  const std::string out = temp_dir("dresume-full");
  procs = start_world(2, args(out), out + ".1");
  wait_for_step(procs[0], 4);
  for (auto& p : procs) ::kill(p.pid, SIGTERM);
  ASSERT_EQ(finish(procs), (std::vector<int>{0, 0})) << logs(out + ".1", 2);
  procs = start_world(2, args(out), out + ".2");
  ASSERT_EQ(finish(procs), (std::vector<int>{0, 0})) << logs(out + ".2", 2);
  EXPECT_EQ(metric_records(out), metric_records(ref));
  EXPECT_TRUE(read_file(path_join(out, "model/model.safetensors")) == read_file(path_join(ref, "model/model.safetensors")));
}

TEST(DistResume, StoppedOnTwoRanksContinuesOnOneAndOnFour) {
  LLMFT_REQUIRE_DATA(kModel);
  const std::string ref = temp_dir("dresume-eref");
  auto procs = start_world(2, job_args(ref, 0.0), ref);
  ASSERT_EQ(finish(procs), (std::vector<int>{0, 0})) << logs(ref, 2);
  const std::string stopped = temp_dir("dresume-stop");
  std::vector<std::string> args = job_args(stopped, 0.0);
  args.push_back("checkpoint.every=0");
  procs = start_world(2, args, stopped);
  wait_for_step(procs[0], 3);
  for (auto& p : procs) ::kill(p.pid, SIGTERM);  // as torchrun forwards it to every worker
  ASSERT_EQ(finish(procs), (std::vector<int>{0, 0})) << logs(stopped, 2);
  std::string ckpt;
  for (const auto& name : list_directory(stopped))
    if (job::checkpoint_step(name) > 0) ckpt = name;
  ASSERT_FALSE(ckpt.empty()) << logs(stopped, 2);
  const int64_t at = job::checkpoint_step(ckpt);

  const auto want = metric_records(ref);
  io::SafetensorsFile want_adapter(path_join(ref, "adapter/adapter_model.safetensors"));
  struct Resume {
    int world;
    std::vector<std::string> extra;
  };
  for (const Resume& r : {Resume{1, {"train.grad_accum=2", "dist.zero_stage=0"}},
                          Resume{4, {"train.micro_batch_size=1", "dist.zero_stage=3"}}}) {
    SCOPED_TRACE(fmt::format("resumed on {} rank(s) after step {}", r.world, at));
    const std::string out = temp_dir("dresume-elastic");
    std::filesystem::copy(path_join(stopped, ckpt), path_join(out, ckpt), std::filesystem::copy_options::recursive);
    std::vector<std::string> a = job_args(out, 0.0);
    a.insert(a.end(), r.extra.begin(), r.extra.end());
    procs = start_world(r.world, a, out);
    ASSERT_EQ(finish(procs), std::vector<int>(static_cast<size_t>(r.world), 0)) << logs(out, r.world);
    EXPECT_NE(read_file(out + ".rank0.log").find(fmt::format("continuing after step {}", at)), std::string::npos);
    const auto got = metric_records(out);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      for (const char* key : {"loss", "eval_loss", "grad_norm"}) {
        if (!want[i].contains(key)) continue;
        const double a1 = got[i][key].get<double>(), b1 = want[i][key].get<double>();
        EXPECT_NEAR(a1, b1, 1e-5 * std::max(1.0, std::abs(b1))) << key << " of record " << i;
      }
      if (want[i].contains("epoch")) EXPECT_EQ(got[i]["epoch"], want[i]["epoch"]) << "the same rows: record " << i;
    }
    io::SafetensorsFile adapter(path_join(out, "adapter/adapter_model.safetensors"));
    ASSERT_EQ(adapter.tensors().size(), want_adapter.tensors().size());
    for (const auto& t : want_adapter.tensors()) {
      const auto& g = adapter.get(t.name);
      ASSERT_EQ(g.nbytes, t.nbytes) << t.name;
      const auto* x = reinterpret_cast<const float*>(g.data);
      const auto* y = reinterpret_cast<const float*>(t.data);
      double worst = 0;
      for (size_t i = 0; i < t.nbytes / 4; ++i) worst = std::max(worst, static_cast<double>(std::abs(x[i] - y[i])));
      EXPECT_LE(worst, 1e-5) << t.name;
    }
  }
}

}  // namespace
}  // namespace llmft::test
