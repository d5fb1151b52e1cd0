// The CUDA paths against the CUDA build of libtorch and the CUDA toolkit from PyPI: they are compiled whenever
// libtorch is a CUDA build, so a build without them fails here, not on the GPU machine. Where no GPU is visible the
// NCCL communicator must refuse with an error that says why, and the GPU tests report SKIPPED, visibly. Where one is
// (bench/gpu/run.sh runs this program on a GPU machine):
//  - variable-length flash attention against the reference kernel, forward and backward, with no (T x T) buffer;
//  - 20 training steps of the same model on the GPU and on the CPU: the same losses within the stated tolerance
//    (fp32: 1e-4 relative, TF32 off as ATen's default; bf16: 3e-2, the two devices round bf16 products differently);
//  - QLoRA (NF4 weights dequantised by tensor operations on the GPU) against the CPU;
//  - greedy generation: the same tokens as the CPU;
//  - NCCL for real in a world of one: every ZeRO stage over it gives the single-process losses.
#include <gtest/gtest.h>

#include <random>

#include <ATen/ATen.h>
#include <ATen/Context.h>

#include <c10/core/InferenceMode.h>

#include "comm/factory.hpp"
#include "dist/dist_support.hpp"
#include "llmft/error.hpp"
#include "model/decoder.hpp"
#include "model/device.hpp"
#include "model/param_store.hpp"
#include "optim/sharded_optimizer.hpp"

using namespace llmft;

TEST(Cuda, TheNcclCommunicatorIsBuiltAgainstACudaLibtorch) {
#if !LLMFT_TORCH_IS_CUDA
  GTEST_SKIP() << "SKIPPED: this libtorch is a CPU build, so the CUDA paths are not compiled";
#else
  EXPECT_TRUE(comm::nccl_available())
      << "libtorch is a CUDA build but the NCCL communicator was not compiled: no CUDA toolkit or nccl.h at configure "
         "time (scripts/deps.sh build installs both from PyPI)";
#endif
}

TEST(Cuda, NcclAllReducesOnAGpuOrSaysThereIsNone) {
  if (!comm::nccl_available()) GTEST_SKIP() << "SKIPPED: the NCCL communicator is not built (CPU-only libtorch)";
  comm::World w;
  w.master_port = test::free_port();
  comm::CommOptions o;
  o.timeout = std::chrono::milliseconds(30000);
  o.rendezvous_timeout = std::chrono::milliseconds(30000);
  if (!at::hasCUDA()) {
    try {
      comm::make_nccl(w, o);
      FAIL() << "the NCCL communicator formed without a GPU";
    } catch (const Error& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("CUDA"), std::string::npos) << what;
      std::printf("[ cuda ] no GPU here; the NCCL communicator refuses: %s\n", what.c_str());
    }
    return;
  }
  auto c = comm::make_nccl(w, o);
  at::Tensor t = at::arange(8, at::TensorOptions().dtype(at::kFloat).device(at::kCUDA));
  c->all_reduce(t, {})->wait();
  EXPECT_TRUE(at::equal(t.cpu(), at::arange(8, at::kFloat)));
  std::printf("[ cuda ] NCCL all_reduce of a CUDA tensor on a world of one: ok\n");
}

namespace {

#define LLMFT_REQUIRE_GPU()                                                                                    \
  do {                                                                                                         \
    if (model::cuda_device_count() == 0) GTEST_SKIP() << "SKIPPED: no GPU is visible (bench/gpu/run.sh runs these)"; \
  } while (0)

double rel(const at::Tensor& a, const at::Tensor& b) {
  at::Tensor ad = a.to(at::kDouble).cpu(), bd = b.to(at::kDouble).cpu();
  return (ad - bd).abs().max().item<double>() / std::max(bd.abs().max().item<double>(), 1e-30);
}

// A Llama with head dim 64 (flash attention's range), grouped key/value heads and an untied head.
const char* kConfig = R"({"architectures": ["LlamaForCausalLM"], "vocab_size": 512, "hidden_size": 256,
  "intermediate_size": 512, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
  "rms_norm_eps": 1e-5, "tie_word_embeddings": false})";

// Packed documents of random tokens (the same on every call), every token after the first a target.
model::Batch batch(int step) {
  std::mt19937 rng(1000 + step);
  std::vector<std::vector<int32_t>> docs;
  std::vector<std::vector<uint8_t>> trained;
  for (int len : {300, 37, 1, 150}) {
    std::vector<int32_t> d(static_cast<size_t>(len));
    for (auto& t : d) t = static_cast<int32_t>(rng() % 512);
    docs.push_back(d);
    trained.emplace_back(d.size(), 1);
  }
  return model::make_batch(docs, trained);
}

struct RunOptions {
  at::Device device = at::kCPU;
  at::ScalarType dtype = at::kFloat;
  model::TrainMode mode = model::TrainMode::kLora;
  model::WeightFormat quantize = model::WeightFormat::kDense;
  comm::Communicator* comm = nullptr;  // null: a world of one
  int zero_stage = 0;
  int steps = 20;
};

// The per-step mean losses of `steps` optimizer steps from the same seeded model (drawn on the CPU, so the same on
// every device).
std::vector<double> train_steps(const RunOptions& r) {
  c10::InferenceMode guard;
  model::DecoderOptions o;
  o.device = r.device;
  o.dtype = r.dtype;
  o.mode = r.mode;
  o.lora.r = 8;
  o.lora.alpha = 16;
  o.lora.dropout = 0;  // the devices draw different masks
  o.quantize.format = r.quantize;
  model::Decoder m(io::ModelConfig::from_json(nlohmann::json::parse(kConfig), "test"), o);
  m.init_random(1, 0.05);
  if (r.mode == model::TrainMode::kLora) {
    m.init_lora(2);
    for (auto& u : m.units())  // B away from zero so that the adapters move the loss from the first step
      if (!u.trainable.empty()) u.trainable.flat.copy_(at::empty_like(u.trainable.flat, at::TensorOptions().device(at::kCPU)).normal_(0, 0.02, at::make_generator<at::CPUGeneratorImpl>(3)));
    m.refresh_compute();
  }
  auto single = comm::make_single_process();
  comm::Communicator& c = r.comm ? *r.comm : *single;
  model::ParamStore store(m, c, r.zero_stage >= 3);
  optim::ShardedOptimizer opt(m, store, c, r.zero_stage, {});
  std::vector<double> losses;
  for (int s = 0; s < r.steps; ++s) {
    const model::Batch b = batch(s % 5);
    opt.begin_step();
    const double loss = m.forward_backward(b, &opt, nullptr);
    opt.finish_step(r.mode == model::TrainMode::kLora ? 2e-3 : 5e-4, 1.0, static_cast<double>(b.num_targets));
    losses.push_back(loss / static_cast<double>(b.num_targets));
  }
  return losses;
}

void expect_close(const std::vector<double>& gpu, const std::vector<double>& cpu, double tol, const char* what) {
  ASSERT_EQ(gpu.size(), cpu.size());
  double worst = 0;
  for (size_t i = 0; i < gpu.size(); ++i) {
    const double e = std::abs(gpu[i] - cpu[i]) / std::abs(cpu[i]);
    worst = std::max(worst, e);
    EXPECT_LT(e, tol) << what << ": step " << i + 1 << " GPU " << gpu[i] << " CPU " << cpu[i];
  }
  std::printf("[ cuda ] %s: %zu steps, losses %.5f -> %.5f (CPU %.5f -> %.5f), worst relative difference %.2e "
              "(tolerance %.0e)\n", what, gpu.size(), gpu.front(), gpu.back(), cpu.front(), cpu.back(), worst, tol);
}

}  // namespace

// Every document of a packed batch in one varlen flash launch (bf16, 32 query heads over 8 key/value heads, D 128,
// 8,192 tokens) against the reference kernel on fp32 copies of the same inputs; what forward and backward allocate
// beyond their inputs stays far below one (T x T) score matrix per head (4.3 GB here).
TEST(Cuda, VarlenFlashAttentionMatchesTheReference) {
  LLMFT_REQUIRE_GPU();
  c10::InferenceMode guard;
  const at::Device dev = model::resolve_device("cuda", 0);
  const std::vector<int64_t> starts = {0, 1200, 1201, 4000, 8192};
  const int64_t N = starts.back(), H = 32, K = 8, D = 128;
  for (int64_t window : {0, 256}) {
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(9);
    auto f32 = at::TensorOptions().dtype(at::kFloat);
    at::Tensor q = at::empty({N, H, D}, f32).normal_(0, 1, gen).to(dev, at::kBFloat16);
    at::Tensor k = at::empty({N, K, D}, f32).normal_(0, 1, gen).to(dev, at::kBFloat16);
    at::Tensor v = at::empty({N, K, D}, f32).normal_(0, 1, gen).to(dev, at::kBFloat16);
    at::Tensor dout = at::empty({N, H, D}, f32).normal_(0, 1, gen).to(dev, at::kBFloat16);
    ASSERT_EQ(model::attention_kernel_for(q), model::AttentionKernel::kCudaFlashVarlen);
    model::synchronize(dev);
    model::reset_peak_allocated(dev);  // the peak starts again at what is allocated now
    const int64_t before = model::peak_allocated_bytes(dev);
    model::AttentionCache cf;
    at::Tensor of = model::attention_forward(q, k, v, starts, window, &cf);
    at::Tensor dq, dk, dv;
    model::attention_backward(dout, cf, starts, window, &dq, &dk, &dv);
    model::synchronize(dev);
    const int64_t peak = model::peak_allocated_bytes(dev);
    model::AttentionCache cr;
    at::Tensor orf = model::attention_forward(q.to(at::kFloat), k.to(at::kFloat), v.to(at::kFloat), starts, window, &cr,
                                              model::AttentionKernel::kReference);
    at::Tensor rq, rk, rv;
    model::attention_backward(dout.to(at::kFloat), cr, starts, window, &rq, &rk, &rv);
    EXPECT_LT(rel(of, orf), 2e-2) << "output, window " << window;
    EXPECT_LT(rel(dq, rq), 3e-2) << "dq, window " << window;
    EXPECT_LT(rel(dk, rk), 3e-2) << "dk, window " << window;
    EXPECT_LT(rel(dv, rv), 3e-2) << "dv, window " << window;
    const int64_t dense = H * N * N * 2;  // one bf16 score matrix per head over the packed row
    const int64_t added = peak - before;  // outputs, log-sum-exp, gradients and the kernels' workspaces
    EXPECT_LT(added, dense / 8) << "peak " << peak << " bytes, " << before << " before";
    std::printf("[ cuda ] varlen flash, window %lld: output %.2e, dq %.2e, dk %.2e, dv %.2e relative to the reference; "
                "%.1f MB allocated beyond the inputs (a dense (T x T) per head: %.1f MB)\n", static_cast<long long>(window),
                rel(of, orf), rel(dq, rq), rel(dk, rk), rel(dv, rv), added / 1e6, dense / 1e6);
  }
}

TEST(Cuda, TrainingOnTheGpuFollowsTheCpuInFp32) {
  LLMFT_REQUIRE_GPU();
  RunOptions r;
  r.mode = model::TrainMode::kFull;
  const auto cpu = train_steps(r);
  r.device = model::resolve_device("cuda", 0);
  expect_close(train_steps(r), cpu, 1e-4, "full fine-tuning, fp32");
}

TEST(Cuda, TrainingOnTheGpuFollowsTheCpuInBf16) {
  LLMFT_REQUIRE_GPU();
  for (model::TrainMode mode : {model::TrainMode::kLora, model::TrainMode::kFull}) {
    RunOptions r;
    r.dtype = at::kBFloat16;
    r.mode = mode;
    const auto cpu = train_steps(r);
    r.device = model::resolve_device("cuda", 0);
    expect_close(train_steps(r), cpu, 3e-2, mode == model::TrainMode::kLora ? "LoRA, bf16" : "full fine-tuning, bf16");
  }
}

TEST(Cuda, QloraOnTheGpuFollowsTheCpu) {
  LLMFT_REQUIRE_GPU();
  RunOptions r;
  r.dtype = at::kBFloat16;
  r.quantize = model::WeightFormat::kNf4;
  r.steps = 10;
  const auto cpu = train_steps(r);
  r.device = model::resolve_device("cuda", 0);
  expect_close(train_steps(r), cpu, 3e-2, "QLoRA (NF4), bf16");
}

TEST(Cuda, GreedyGenerationOnTheGpuGivesTheCpuTokens) {
  LLMFT_REQUIRE_GPU();
  c10::InferenceMode guard;
  std::vector<std::vector<int32_t>> out;
  for (at::Device dev : {at::Device(at::kCPU), model::resolve_device("cuda", 0)}) {
    model::DecoderOptions o;
    o.device = dev;
    o.mode = model::TrainMode::kNone;
    model::Decoder m(io::ModelConfig::from_json(nlohmann::json::parse(kConfig), "test"), o);
    m.init_random(1, 0.5);  // peaked logits: no near-ties for the two devices to break differently
    model::GenerateOptions g;
    g.max_new_tokens = 12;
    for (const auto& ids : m.generate_batch({{1, 2, 3, 4, 5}, {7, 8}}, g)) out.push_back(ids);
  }
  EXPECT_EQ(out[2], out[0]);
  EXPECT_EQ(out[3], out[1]);
}

TEST(Cuda, NcclCarriesEveryZeroStageOnOneGpu) {
  LLMFT_REQUIRE_GPU();
  ASSERT_TRUE(comm::nccl_available());
  const at::Device dev = model::resolve_device("cuda", 0);
  RunOptions r;
  r.device = dev;
  r.steps = 5;
  const auto single = train_steps(r);
  comm::World w;
  w.master_port = test::free_port();
  comm::CommOptions o;
  o.cuda_device = dev.index();
  auto nccl = comm::make_nccl(w, o);
  EXPECT_EQ(nccl->device(), dev);
  r.comm = nccl.get();
  for (int stage = 0; stage <= 3; ++stage) {
    r.zero_stage = stage;
    const auto losses = train_steps(r);
    for (size_t i = 0; i < losses.size(); ++i)
      EXPECT_NEAR(losses[i], single[i], 1e-5 * std::abs(single[i])) << "ZeRO-" << stage << " over NCCL, step " << i + 1;
  }
  std::printf("[ cuda ] ZeRO stages 0-3 over NCCL on %s: the single-process losses\n", model::describe(dev).c_str());
}
