// The device seam and the per-device kernels, checked where no GPU is: model.device resolves (and refuses) as
// documented; the kernels a GPU runs are held to the CPU's on the CPU wherever ATen runs them there too:
//  - attention: the reference kernel (what a GPU runs in fp32) against ATen's CPU flash kernel, forward and
//    backward, packed documents, grouped key/value heads, sliding window;
//  - stored weights: the ATen-operation dequantisation (what a GPU runs) against the CPU's loops, bit for bit, NF4
//    (single and double quantised, rows starting mid-byte) and FP8 blocks;
//  - AdamW: ATen's fused kernel (every device's update) against the same update as tensor operations.
// The GPU itself (varlen flash, training against the CPU, NCCL) is in tests/cuda.
#include <gtest/gtest.h>

#include <c10/core/InferenceMode.h>

#include "comm/communicator.hpp"
#include "llmft/error.hpp"
#include "model/decoder.hpp"
#include "model/device.hpp"
#include "model/ops.hpp"
#include "model/stored_weight.hpp"
#include "optim/sharded_optimizer.hpp"

using namespace llmft;

namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

double rel(const at::Tensor& a, const at::Tensor& b) {
  const double d = b.to(at::kDouble).abs().max().item<double>();
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>() / std::max(d, 1e-30);
}

}  // namespace

TEST(Device, ModelDeviceResolvesAndRefusesByName) {
  EXPECT_TRUE(model::resolve_device("cpu", 3).is_cpu());
  const int gpus = model::cuda_device_count();
  const at::Device a = model::resolve_device("auto", 1);
  if (gpus == 0) {
    EXPECT_TRUE(a.is_cpu());
    const std::string e = error_of([] { model::resolve_device("cuda", 0); });
    EXPECT_NE(e.find("model.device=cuda: no CUDA device is visible"), std::string::npos) << e;
    EXPECT_NE(error_of([] { model::resolve_device("cuda:0", 0); }).find("model.device=cuda:0"), std::string::npos);
  } else {
    EXPECT_TRUE(a.is_cuda());
    EXPECT_EQ(a.index(), 1 % gpus);  // the local rank's GPU
    EXPECT_EQ(model::resolve_device("cuda", 5).index(), 5 % gpus);
    const std::string e = error_of([&] { model::resolve_device("cuda:" + std::to_string(gpus), 0); });
    EXPECT_NE(e.find("this process sees"), std::string::npos) << e;
  }
  for (const char* bad : {"gpu", "cuda:", "cuda:x", "cuda:-1", "CPU", ""}) {
    const std::string e = error_of([&] { model::resolve_device(bad, 0); });
    EXPECT_NE(e.find("not a device (auto, cpu, cuda, cuda:N)"), std::string::npos) << bad << ": " << e;
  }
  EXPECT_EQ(model::describe(at::Device(at::kCPU)), "cpu");
  EXPECT_EQ(model::peak_allocated_bytes(at::Device(at::kCPU)), 0);
  EXPECT_TRUE(model::make_generator(at::Device(at::kCPU), 5).device().is_cpu());
}

TEST(Device, HostCollectivesPassThroughACpuCommunicator) {
  auto one = comm::make_single_process();
  EXPECT_TRUE(one->device().is_cpu());
  at::Tensor t = at::tensor({1.0, 2.0}, at::kDouble);
  comm::all_reduce_host(*one, t);
  comm::broadcast_host(*one, t);
  at::Tensor out = at::empty({2}, at::kDouble);
  comm::all_gather_host(*one, out, t);
  EXPECT_TRUE(at::equal(out, t));
}

// The reference kernel is what a GPU runs in fp32 (and what the GPU tests hold varlen flash to): here it is held to
// ATen's CPU flash kernel. Documents of 29, 1, 64 and 40 tokens, 8 query heads over 2 key/value heads, D 16, with
// and without a window of 9.
TEST(Device, ReferenceAttentionMatchesTheCpuFlashKernel) {
  c10::InferenceMode guard;
  const std::vector<int64_t> starts = {0, 29, 30, 94, 134};
  const int64_t N = starts.back(), H = 8, K = 2, D = 16;
  for (at::ScalarType dtype : {at::kDouble, at::kFloat}) {
    for (int64_t window : {0, 9}) {
      at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(17);
      auto opt = at::TensorOptions().dtype(dtype);
      at::Tensor q = at::empty({N, H, D}, opt).normal_(0, 1, gen), k = at::empty({N, K, D}, opt).normal_(0, 1, gen),
                 v = at::empty({N, K, D}, opt).normal_(0, 1, gen), dout = at::empty({N, H, D}, opt).normal_(0, 1, gen);
      model::AttentionCache cf, cr;
      at::Tensor of = model::attention_forward(q, k, v, starts, window, &cf, model::AttentionKernel::kCpuFlash);
      at::Tensor orf = model::attention_forward(q, k, v, starts, window, &cr, model::AttentionKernel::kReference);
      EXPECT_EQ(cr.kernel, model::AttentionKernel::kReference);
      const double tol = dtype == at::kDouble ? 1e-12 : 2e-6;
      EXPECT_LT(rel(orf, of), tol) << "output, window " << window;
      EXPECT_LT(rel(cr.lse, cf.lse), tol) << "log-sum-exp, window " << window;
      at::Tensor dq1, dk1, dv1, dq2, dk2, dv2;
      model::attention_backward(dout, cf, starts, window, &dq1, &dk1, &dv1);
      model::attention_backward(dout, cr, starts, window, &dq2, &dk2, &dv2);
      EXPECT_LT(rel(dq2, dq1), 5 * tol) << "dq, window " << window;
      EXPECT_LT(rel(dk2, dk1), 5 * tol) << "dk, window " << window;
      EXPECT_LT(rel(dv2, dv1), 5 * tol) << "dv, window " << window;
    }
  }
  EXPECT_EQ(model::attention_kernel_for(at::zeros({1, 1, 8})), model::AttentionKernel::kCpuFlash);
}

// A GPU dequantises stored weights with ATen operations; those give the CPU loops' values bit for bit.
TEST(Device, StoredWeightsDequantiseAlikeWithTensorOperations) {
  c10::InferenceMode guard;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(5);
  const at::Tensor w = at::empty({37, 131}, at::kFloat).normal_(0, 0.05, gen);  // 131 columns: odd rows start mid-byte
  std::vector<model::StoredWeight> stored = {model::quantize_nf4("a", w, 64, true), model::quantize_nf4("b", w, 64, false),
                                             model::quantize_fp8_block("c", w, 16, 32)};
  for (const auto& s : stored) {
    for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
      for (auto [start, n] : {std::pair<int64_t, int64_t>{0, 37}, {3, 5}, {1, 1}, {36, 1}, {4, 2}}) {
        at::Tensor loops = s.dequantize_rows(start, n, dtype), ops = s.dequantize_rows_ops(start, n, dtype);
        EXPECT_TRUE(at::equal(loops, ops)) << s.name << " rows " << start << "+" << n << " " << c10::toString(dtype);
      }
    }
    const model::StoredWeight moved = s.to(at::Device(at::kCPU));
    EXPECT_TRUE(at::equal(moved.dequantize(at::kFloat), s.dequantize(at::kFloat)));
  }
}

// ATen's fused AdamW (every device's update) against the same update written as tensor operations, over three steps
// of the same gradients, with weight decay and clipping: the same parameters and moments to fp32 rounding.
TEST(Device, FusedAdamWMatchesTheTensorOperations) {
  c10::InferenceMode guard;
  const char* cfg = R"({"architectures": ["LlamaForCausalLM"], "vocab_size": 61, "hidden_size": 32,
    "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2})";
  auto make = [&] {
    model::DecoderOptions o;
    o.mode = model::TrainMode::kFull;
    auto m = std::make_unique<model::Decoder>(io::ModelConfig::from_json(nlohmann::json::parse(cfg), "test"), o);
    m->init_random(3, 0.2);
    return m;
  };
  auto a = make(), b = make();
  auto one = comm::make_single_process();
  optim::AdamWOptions fused{0.9, 0.95, 1e-8, 0.1}, loop = fused;
  loop.fused = false;
  optim::ShardedOptimizer oa(*a, *one, 0, loop), ob(*b, *one, 0, fused);
  for (int step = 0; step < 3; ++step) {
    for (size_t i = 0; i < a->units().size(); ++i) {
      at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(100 + step * 10 + i);
      at::Tensor g = at::empty_like(a->units()[i].grad).normal_(0, 1, gen);
      a->units()[i].grad.copy_(g);
      b->units()[i].grad.copy_(g);
    }
    oa.begin_step();
    ob.begin_step();
    const auto ra = oa.finish_step(1e-2, 1.0, 4.0), rb = ob.finish_step(1e-2, 1.0, 4.0);
    EXPECT_DOUBLE_EQ(ra.grad_norm, rb.grad_norm);
    for (size_t i = 0; i < a->units().size(); ++i)
      EXPECT_LT(rel(b->units()[i].trainable.flat, a->units()[i].trainable.flat), 1e-6) << "unit " << i << " step " << step;
  }
  const auto sa = oa.export_state(), sb = ob.export_state();
  for (size_t i = 0; i < sa.exp_avg.size(); ++i) {
    EXPECT_LT(rel(sb.exp_avg[i], sa.exp_avg[i]), 1e-6) << sa.names[i];
    EXPECT_LT(rel(sb.exp_avg_sq[i], sa.exp_avg_sq[i]), 1e-5) << sa.names[i];
  }
}
