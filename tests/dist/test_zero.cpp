// Data parallelism end to end, with real processes over Gloo: training with world size 2 and 4 at each ZeRO stage
// 0-3 gives the same losses and final weights as one process with the same global batch (relative difference
// <= 1e-5 in fp32), for full fine-tuning and for LoRA; killing one rank of a running job makes the other stop within
// the timeout with an error naming the operation and the missing rank; optimizer-state and parameter bytes per rank
// are 1/N of the replicated amount.
#include <gtest/gtest.h>

#include <signal.h>

#include <cmath>
#include <functional>

#include <nlohmann/json.hpp>

#include "comm/communicator.hpp"
#include "dist_support.hpp"
#include "io/safetensors.hpp"
#include "model/model_support.hpp"
#include "optim/sharded_optimizer.hpp"

using namespace llmft;

namespace {

// A small job: the embedded Llama-3-architecture model shrunk, 4 optimizer steps of a global batch of 4 rows. The
// runs differ only in the order fp32 gradients are summed (micro-batch by micro-batch in one process, per rank then
// across ranks in a world); Adam's normalisation amplifies that rounding where a gradient nearly cancels, in
// proportion to lr x steps (at lr 3e-3 LoRA weights differ by up to 6.8e-6, at 1e-3 by 2.6e-6). Differences are
// measured over all weights together (see weights_diff).
std::vector<std::string> job_args(const std::string& out, const std::string& mode, int world, int stage) {
  return {"model.hidden_size=32", "model.intermediate_size=64", "model.num_layers=2", "model.num_heads=2",
          "model.num_kv_heads=1", "data.synthetic_records=120", "data.seq_len=64", "data.eval_count=4",
          "train.max_steps=4", "train.micro_batch_size=1", "train.grad_accum=" + std::to_string(4 / world),
          "train.mode=" + mode, "train.lr=0.001", "train.warmup_steps=0", "train.max_grad_norm=0.5",
          "train.weight_decay=0.01", "lora.r=4", "lora.dropout=0", "generate.num_samples=0", "log.every=1",
          "dist.timeout_s=120", "dist.zero_stage=" + std::to_string(stage), "output.dir=" + out};
}

std::vector<double> losses(const std::string& out) { return test::logged_losses(out); }

std::string weights_file(const std::string& out, const std::string& mode) {
  return mode == "full" ? out + "/model/model.safetensors" : out + "/adapter/adapter_model.safetensors";
}

// The relative difference of two sets of weights, over all their tensors taken as one vector w:
// max |w_a - w_b| / max |w_b| (elementwise, scaled by the largest weight) and ||w_a - w_b|| / ||w_b||.
struct Diff {
  double max_rel = 0, l2_rel = 0;
};
Diff weights_diff(const std::string& a_path, const std::string& b_path) {
  io::SafetensorsFile a(a_path), b(b_path);
  EXPECT_EQ(a.tensors().size(), b.tensors().size());
  double max_abs = 0, max_w = 0, sq_diff = 0, sq_w = 0;
  for (const auto& tb : b.tensors()) {
    if (!a.contains(tb.name)) {
      ADD_FAILURE() << tb.name << " missing from " << a_path;
      continue;
    }
    const auto& ta = a.get(tb.name);
    EXPECT_EQ(ta.shape, tb.shape) << tb.name;
    EXPECT_EQ(ta.dtype, io::DType::kF32) << tb.name;
    const auto* x = reinterpret_cast<const float*>(ta.data);
    const auto* y = reinterpret_cast<const float*>(tb.data);
    for (int64_t i = 0; i < tb.numel(); ++i) {
      const double d = static_cast<double>(x[i]) - y[i];
      max_abs = std::max(max_abs, std::abs(d));
      max_w = std::max(max_w, std::abs(static_cast<double>(y[i])));
      sq_diff += d * d;
      sq_w += static_cast<double>(y[i]) * y[i];
    }
  }
  return {max_w > 0 ? max_abs / max_w : max_abs, sq_w > 0 ? std::sqrt(sq_diff / sq_w) : std::sqrt(sq_diff)};
}

std::string tail_of(const std::string& log) {
  std::string s = file_exists(log) ? read_file(log) : "";
  return s.size() > 3000 ? s.substr(s.size() - 3000) : s;
}

class Equivalence : public ::testing::TestWithParam<std::string> {};

}  // namespace

TEST_P(Equivalence, WorldsOf2And4AtEveryZeroStageMatchOneProcess) {
  const std::string mode = GetParam();
  const std::string dir = test::temp_dir("zero-" + mode);
  const std::string ref = dir + "/world1";
  ASSERT_EQ(test::run_world(1, job_args(ref, mode, 1, 0), ref), std::vector<int>{0}) << tail_of(ref + ".rank0.log");
  const std::vector<double> ref_losses = losses(ref);
  ASSERT_EQ(ref_losses.size(), 4u);
  for (int world : {2, 4}) {
    for (int stage = 0; stage <= 3; ++stage) {
      SCOPED_TRACE("world " + std::to_string(world) + ", ZeRO stage " + std::to_string(stage));
      const std::string out = dir + "/world" + std::to_string(world) + "-stage" + std::to_string(stage);
      const auto codes = test::run_world(world, job_args(out, mode, world, stage), out);
      ASSERT_EQ(codes, std::vector<int>(static_cast<size_t>(world), 0)) << tail_of(out + ".rank0.log");
      const std::vector<double> l = losses(out);
      ASSERT_EQ(l.size(), ref_losses.size());
      for (size_t i = 0; i < l.size(); ++i)
        EXPECT_LE(std::abs(l[i] - ref_losses[i]), 1e-5 * std::abs(ref_losses[i])) << "step " << i + 1;
      const Diff d = weights_diff(weights_file(out, mode), weights_file(ref, mode));
      std::printf("%s world %d stage %d: final weights differ by %.2e (max, relative to the largest weight), %.2e "
                  "(L2, relative)\n", mode.c_str(), world, stage, d.max_rel, d.l2_rel);
      EXPECT_LE(d.max_rel, 1e-5);
      EXPECT_LE(d.l2_rel, 1e-5);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, Equivalence, ::testing::Values("full", "lora"));

TEST(ShardedLoading, ZeroStage3FromAModelDirectoryMatchesOneProcess) {
  // Under ZeRO-3 with model.path each rank reads only its slices of the safetensors (Decoder::load_base_shard) and
  // never builds the whole model; the losses, weights and sample answers (generated a gathered layer at a time) are
  // those of one process that loaded it whole.
  const std::string dir = test::temp_dir("zero-sharded-load");
  const std::string seed_run = dir + "/seed";
  ASSERT_EQ(test::run_world(1, job_args(seed_run, "lora", 1, 0), seed_run), std::vector<int>{0});
  const std::string base = seed_run + "/base";  // the embedded model as a Hugging Face directory
  ASSERT_TRUE(file_exists(base + "/config.json"));
  for (const std::string mode : {"full", "lora"}) {
    SCOPED_TRACE(mode);
    auto args = [&](const std::string& out, int world, int stage) {
      auto a = job_args(out, mode, world, stage);
      a.push_back("model.path=" + base);
      a.push_back("generate.num_samples=2");  // answered under ZeRO-3 one gathered layer at a time
      a.push_back("generate.max_new_tokens=6");
      return a;
    };
    const std::string ref = dir + "/" + mode + "-world1";
    ASSERT_EQ(test::run_world(1, args(ref, 1, 0), ref), std::vector<int>{0}) << tail_of(ref + ".rank0.log");
    const std::string out = dir + "/" + mode + "-world2-stage3";
    ASSERT_EQ(test::run_world(2, args(out, 2, 3), out), std::vector<int>(2, 0)) << tail_of(out + ".rank0.log");
    EXPECT_NE(read_file(out + ".rank0.log").find("read its 1/2 of the weights of " + base + " (ZeRO-3)"), std::string::npos)
        << tail_of(out + ".rank0.log");
    const std::vector<double> a = losses(ref), b = losses(out);
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) EXPECT_LE(std::abs(a[i] - b[i]), 1e-5 * std::abs(a[i])) << "step " << i + 1;
    const Diff d = weights_diff(weights_file(out, mode), weights_file(ref, mode));
    EXPECT_LE(d.max_rel, 1e-5);
    EXPECT_LE(d.l2_rel, 1e-5);
    EXPECT_EQ(read_file(out + "/samples.txt"), read_file(ref + "/samples.txt"));
  }
}

// A LoRA job run as one process (into dir/<tag>-world1) and at each (world, ZeRO stage) of `splits`: the same losses
// and the same final adapter.
using JobArgs = std::function<std::vector<std::string>(const std::string& out, int world, int stage)>;
void expect_worlds_match_one_process(const std::string& dir, const std::string& tag, const JobArgs& args,
                                     const std::vector<std::pair<int, int>>& splits) {
  const std::string ref = dir + "/" + tag + "-world1";
  ASSERT_EQ(test::run_world(1, args(ref, 1, 0), ref), std::vector<int>{0}) << tail_of(ref + ".rank0.log");
  for (const auto& [world, stage] : splits) {
    SCOPED_TRACE(tag + ", world " + std::to_string(world) + ", ZeRO stage " + std::to_string(stage));
    const std::string out = dir + "/" + tag + "-world" + std::to_string(world);
    ASSERT_EQ(test::run_world(world, args(out, world, stage), out), std::vector<int>(static_cast<size_t>(world), 0))
        << tail_of(out + ".rank0.log");
    const std::vector<double> a = losses(ref), b = losses(out);
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) EXPECT_LE(std::abs(a[i] - b[i]), 1e-5 * std::abs(a[i])) << "step " << i + 1;
    const Diff d = weights_diff(weights_file(out, "lora"), weights_file(ref, "lora"));
    EXPECT_LE(d.max_rel, 1e-5);
    EXPECT_LE(d.l2_rel, 1e-5);
  }
}

TEST(QuantizedBase, QloraOverZeroMatchesOneProcess) {
  // model.quantize=nf4: every rank quantises the same base (stored weights are replicated, also under ZeRO-3, where
  // the flat buffers are read slice by slice); ZeRO shards the adapters and their optimizer state. Worlds of 2
  // (ZeRO-3) and 4 (ZeRO-2) train what one process trains.
  const std::string dir = test::temp_dir("zero-qlora");
  const std::string seed_run = dir + "/seed";
  ASSERT_EQ(test::run_world(1, job_args(seed_run, "lora", 1, 0), seed_run), std::vector<int>{0});
  const std::string base = seed_run + "/base";
  auto args = [&](const std::string& out, int world, int stage) {
    auto a = job_args(out, "lora", world, stage);
    a.push_back("model.path=" + base);
    a.push_back("model.quantize=nf4");
    return a;
  };
  expect_worlds_match_one_process(dir, "nf4", args, {{2, 3}, {4, 2}});
}

TEST(QuantizedBase, QloraOnAMixtureOverZeroMatchesOneProcess) {
  // A Qwen3-MoE base (4 experts, top-2; layer 1 dense), LoRA on attention and experts, quantised to NF4 on load (the
  // stored experts replicated on every rank) or not (sharded with the rest of each layer); the adapters and their
  // optimizer state sharded by ZeRO.
  const std::string dir = test::temp_dir("zero-moe");
  const std::string seed_run = dir + "/seed";
  ASSERT_EQ(test::run_world(1, job_args(seed_run, "lora", 1, 0), seed_run), std::vector<int>{0});
  const std::string base = dir + "/moe";
  make_dirs(base);
  const nlohmann::json seed_config = nlohmann::json::parse(read_file(seed_run + "/base/config.json"));
  nlohmann::json cj = {{"architectures", {"Qwen3MoeForCausalLM"}}, {"vocab_size", seed_config["vocab_size"]},
                       {"hidden_size", 32}, {"intermediate_size", 48}, {"moe_intermediate_size", 16},
                       {"num_hidden_layers", 2}, {"num_attention_heads", 2}, {"num_key_value_heads", 1},
                       {"head_dim", 16}, {"num_experts", 4}, {"num_experts_per_tok", 2}, {"norm_topk_prob", true},
                       {"mlp_only_layers", {1}}, {"max_position_embeddings", 256}, {"tie_word_embeddings", true}};
  model::DecoderOptions opt;
  opt.mode = model::TrainMode::kNone;
  model::Decoder m(io::ModelConfig::from_json(cj, "moe config"), opt);
  m.init_random(5, 0.1);
  test::save_for_reference(m, base);
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
    if (file_exists(seed_run + "/base/" + f)) write_file_atomic(base + "/" + f, read_file(seed_run + "/base/" + f));
  // NF4 experts replicated at worlds 2 (ZeRO-3) and 4 (ZeRO-2); dense experts sharded by ZeRO-3 at world 2 (each
  // layer's experts gathered for its forward and backward), also with activation checkpointing (gathered again for
  // the recomputation, in the backward).
  const std::vector<std::pair<std::string, std::string>> variants = {
      {"nf4", "model.quantize=nf4"}, {"none", "model.quantize=none"}, {"ckpt", "train.activation_checkpointing=true"}};
  for (const auto& [tag, setting] : variants) {
    auto args = [&](const std::string& out, int world, int stage) {
      auto a = job_args(out, "lora", world, stage);
      a.push_back(setting);
      a.push_back("lora.target_modules=q_proj,v_proj,experts");
      a.push_back("model.path=" + base);
      return a;
    };
    expect_worlds_match_one_process(dir, tag, args,
                                    tag == "nf4" ? std::vector<std::pair<int, int>>{{2, 3}, {4, 2}}
                                                 : std::vector<std::pair<int, int>>{{2, 3}});
  }
  const std::string ref = dir + "/nf4-world1";
  // The adapter holds every expert's LoRA pairs.
  io::SafetensorsFile adapter(weights_file(ref, "lora"));
  EXPECT_TRUE(adapter.contains("base_model.model.model.layers.0.mlp.experts.3.down_proj.lora_B.weight"));
}

TEST(Failure, KillingOneRankStopsTheOthersWithADiagnosis) {
  const std::string dir = test::temp_dir("kill");
  const std::string out = dir + "/out";
  std::vector<std::string> args = job_args(out, "full", 2, 2);
  args.push_back("train.max_steps=100000");
  args.push_back("dist.timeout_s=20");
  const int port = test::free_port();
  std::vector<test::Proc> procs;
  struct KillOnExit {  // whatever fails below, no rank outlives the test (they would train for 100,000 steps)
    std::vector<test::Proc>& procs;
    ~KillOnExit() {
      for (auto& p : procs) kill(p.pid, SIGKILL);
    }
  } guard{procs};
  for (int r = 0; r < 2; ++r) {
    std::vector<std::string> argv = {test::llmft_bin(), "train"};
    argv.insert(argv.end(), args.begin(), args.end());
    procs.push_back(test::spawn(argv,
                                {{"RANK", std::to_string(r)}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "127.0.0.1"},
                                 {"MASTER_PORT", std::to_string(port)}},
                                dir + "/rank" + std::to_string(r) + ".log"));
  }
  // Wait until training runs (a few logged steps), then kill rank 1 as an OOM killer or a node loss would.
  for (int i = 0; i < 600 && losses(out).size() < 3; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_GE(losses(out).size(), 3u) << tail_of(dir + "/rank0.log");
  kill(procs[1].pid, SIGKILL);
  const auto t0 = std::chrono::steady_clock::now();
  const int code = test::wait_for(procs[0], std::chrono::seconds(60));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  test::wait_for(procs[1], std::chrono::seconds(5));
  const std::string log = read_file(dir + "/rank0.log");
  EXPECT_NE(code, 0) << log;
  EXPECT_NE(code, -1) << "rank 0 still running 60 s after its peer died";
  EXPECT_LT(seconds, 20 + 10) << "rank 0 must stop within dist.timeout_s (plus the diagnosis)";
  // The diagnosis: which operation, its sequence number, which rank is missing.
  EXPECT_NE(log.find("rank 0: "), std::string::npos) << log;
  EXPECT_TRUE(log.find("all_reduce #") != std::string::npos || log.find("reduce_scatter #") != std::string::npos ||
              log.find("all_gather #") != std::string::npos || log.find("barrier #") != std::string::npos)
      << log;
  EXPECT_NE(log.find("missing rank(s): 1 (dead"), std::string::npos) << log;
}

namespace {

// A communicator that only knows its place (rank, size): enough to build a sharding plan and measure it.
class Placeholder : public comm::Communicator {
 public:
  Placeholder(int rank, int size) : rank_(rank), size_(size) {}
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "placeholder"; }
  std::shared_ptr<comm::Work> all_reduce(at::Tensor&, const comm::AllReduceOptions&) override { return comm::completed_work(); }
  std::shared_ptr<comm::Work> reduce_scatter(at::Tensor&, const at::Tensor&, const comm::ReduceScatterOptions&) override {
    return comm::completed_work();
  }
  std::shared_ptr<comm::Work> all_gather(at::Tensor&, const at::Tensor&, const comm::AllGatherOptions&) override {
    return comm::completed_work();
  }
  std::shared_ptr<comm::Work> broadcast(at::Tensor&, const comm::BroadcastOptions&) override { return comm::completed_work(); }
  void barrier(const comm::BarrierOptions&) override {}

 private:
  int rank_, size_;
};

std::unique_ptr<model::Decoder> memory_model(model::TrainMode mode, int world) {
  model::DecoderOptions opt;
  opt.mode = mode;
  opt.lora.target_modules = {"all-linear"};
  opt.align = 64 * world;
  auto cfg = io::ModelConfig::from_json(nlohmann::json::parse(R"({"architectures": ["LlamaForCausalLM"],
    "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 160, "num_hidden_layers": 3,
    "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-5, "tie_word_embeddings": false})"), "t");
  auto m = std::make_unique<model::Decoder>(cfg, opt);
  m->init_random(1);
  if (mode == model::TrainMode::kLora) m->init_lora(2);
  return m;
}

}  // namespace

TEST(Memory, ShardedBytesPerRankAreOneNthOfReplicated) {
  for (auto mode : {model::TrainMode::kFull, model::TrainMode::kLora}) {
    optim::MemoryReport replicated;
    {
      auto m = memory_model(mode, 1);
      Placeholder one(0, 1);
      replicated = optim::ShardedOptimizer(*m, one, 0, {}).memory();
    }
    for (int n : {1, 2, 4}) {
      for (int stage = 1; stage <= 3; ++stage) {
        auto m = memory_model(mode, n);
        Placeholder c(n - 1, n);
        const optim::MemoryReport r = optim::ShardedOptimizer(*m, c, stage, {}).memory();
        std::printf("%s N=%d stage %d: optimizer state %lld B (replicated %lld), parameters %lld B (replicated %lld), "
                    "gradients %lld B\n",
                    mode == model::TrainMode::kFull ? "full" : "lora", n, stage,
                    static_cast<long long>(r.optimizer_state_bytes), static_cast<long long>(replicated.optimizer_state_bytes),
                    static_cast<long long>(r.parameter_bytes), static_cast<long long>(replicated.parameter_bytes),
                    static_cast<long long>(r.gradient_bytes));
        // 1/N within 1% plus the padding of each unit's buffers to a multiple of 64 x N elements.
        const double padding = 4.0 * 64 * n * 2 * static_cast<double>(m->units().size()) * 4;
        const double want_state = static_cast<double>(replicated.optimizer_state_bytes) / n;
        EXPECT_NEAR(static_cast<double>(r.optimizer_state_bytes), want_state, 0.01 * want_state + padding);
        if (stage == 3) {
          const double want_params = static_cast<double>(replicated.parameter_bytes) / n;
          EXPECT_NEAR(static_cast<double>(r.parameter_bytes), want_params, 0.01 * want_params + padding);
        } else {
          EXPECT_NEAR(static_cast<double>(r.parameter_bytes), static_cast<double>(replicated.parameter_bytes),
                      padding);
        }
        if (stage >= 2) {
          const double want_grads = static_cast<double>(replicated.gradient_bytes) / n;
          EXPECT_NEAR(static_cast<double>(r.gradient_bytes), want_grads, 0.01 * want_grads + padding);
        }
      }
    }
  }
}
