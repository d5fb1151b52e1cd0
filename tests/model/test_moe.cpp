// The mixture-of-experts op (model/ops.hpp moe_forward / moe_backward) on its own: the rows of each expert padded
// to blocks of 64 (what bf16 runs with) give what the unpadded blocks give, forward and backward, with LoRA on the
// experts and a trained router; an expert no token chose gets no gradient. Transformers judges the whole model in
// test_numerics.cpp; this checks the padding, which those fp32 cases do not take.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include "model/ops.hpp"

using namespace llmft;

namespace {

struct Experts {
  std::vector<at::Tensor> tensors;  // kept alive
  model::MoeWeights w;
};

// E experts of size F on hidden C, LoRA rank R on every expert matrix, a trained router; gradients zeroed.
Experts make_experts(int64_t E, int64_t C, int64_t F, int64_t R, int64_t k, at::Generator& gen) {
  Experts x;
  auto param = [&](std::vector<int64_t> shape) {
    x.tensors.push_back(at::randn(shape, gen, at::kDouble).mul_(0.3));
    return x.tensors.back();
  };
  auto grad = [&](const at::Tensor& t) {
    x.tensors.push_back(at::zeros_like(t));
    return x.tensors.back();
  };
  x.w.router = param({E, C});
  x.w.drouter = grad(x.w.router);
  x.w.top_k = k;
  x.w.norm_topk_prob = true;
  x.w.experts.resize(static_cast<size_t>(E));
  for (auto& e : x.w.experts) {
    for (auto [lw, out, in] : {std::tuple{&e.gate, F, C}, {&e.up, F, C}, {&e.down, C, F}}) {
      lw->w = param({out, in});
      lw->lora_a = param({R, in});
      lw->lora_b = param({out, R});
      lw->dlora_a = grad(lw->lora_a);
      lw->dlora_b = grad(lw->lora_b);
      lw->scaling = 2.0;
    }
  }
  return x;
}

double rel(const at::Tensor& a, const at::Tensor& b) {
  const double d = b.abs().max().item<double>();
  return (a - b).abs().max().item<double>() / (d > 0 ? d : 1.0);
}

TEST(Moe, PaddedExpertBlocksComputeWhatUnpaddedBlocksDo) {
  c10::InferenceMode guard;
  const int64_t N = 37, C = 12, F = 8, E = 6, R = 3, k = 2;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(3);
  at::Tensor x = at::randn({N, C}, gen, at::kDouble), dy = at::randn({N, C}, gen, at::kDouble);
  // The same weights twice (one generator state), run unpadded and padded.
  at::Generator g1 = at::make_generator<at::CPUGeneratorImpl>(9), g2 = at::make_generator<at::CPUGeneratorImpl>(9);
  Experts plain = make_experts(E, C, F, R, k, g1), padded = make_experts(E, C, F, R, k, g2);
  padded.w.row_granule = 64;
  model::MoeCache c1, c2;
  at::Tensor y1 = model::moe_forward(x, plain.w, &c1, nullptr), y2 = model::moe_forward(x, padded.w, &c2, nullptr);
  EXPECT_LE(rel(y2, y1), 1e-12);
  EXPECT_EQ(c2.offsets.back() % 64, 0);
  EXPECT_GT(c2.offsets.back(), c1.offsets.back());  // padding rows were added
  const at::Tensor extra = at::rand({E}, gen, at::kDouble);  // a load-balancing gradient
  at::Tensor dx1 = model::moe_backward(dy, plain.w, c1, extra), dx2 = model::moe_backward(dy, padded.w, c2, extra);
  EXPECT_LE(rel(dx2, dx1), 1e-12);
  EXPECT_LE(rel(padded.w.drouter, plain.w.drouter), 1e-12);
  for (size_t e = 0; e < plain.w.experts.size(); ++e) {
    const auto& a = plain.w.experts[e];
    const auto& b = padded.w.experts[e];
    const bool chosen = c1.offsets[e + 1] > c1.offsets[e];
    for (auto [p, q] : {std::pair{&a.gate, &b.gate}, {&a.up, &b.up}, {&a.down, &b.down}}) {
      EXPECT_LE(rel(q->dlora_a, p->dlora_a), 1e-12) << "expert " << e;
      EXPECT_LE(rel(q->dlora_b, p->dlora_b), 1e-12) << "expert " << e;
      if (!chosen) EXPECT_EQ(p->dlora_b.abs().max().item<double>(), 0.0) << "expert " << e << " was chosen by none";
    }
  }
}

}  // namespace
