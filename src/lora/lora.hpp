// LoRA (Hu et al.), as PEFT implements it for nn.Linear: y = W x + b + s * B(A(dropout(x))) with A (r, in),
// B (out, r), s = alpha / r (alpha / sqrt(r) with rsLoRA). A starts Kaiming-uniform with a = sqrt(5) (uniform in
// +-1/sqrt(in)), B starts at zero, so training starts from the base model. Merging writes W + s * B A.
//
// The merge is plain matrix arithmetic on host buffers (Eigen), so exporting a merged checkpoint needs no libtorch.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace llmft::lora {

// The linear modules of a decoder layer that LoRA may target, in PEFT's names.
const std::vector<std::string>& all_linear_modules();  // q_proj k_proj v_proj o_proj gate_proj up_proj down_proj

struct LoraSpec {
  int64_t r = 8;
  double alpha = 16;
  double dropout = 0.0;
  bool use_rslora = false;
  std::vector<std::string> target_modules = {"q_proj", "v_proj"};  // or {"all-linear"}
  double scaling() const;
  // Expands "all-linear" (the seven linears and, in a mixture-of-experts model, every expert's gate/up/down; never
  // the router). "experts" targets every expert's gate_proj, up_proj and down_proj; gate_proj / up_proj / down_proj
  // name the dense MLPs. Throws Error(kInvalidArgument) naming a module that is none of these.
  std::vector<std::string> resolved_targets() const;
  bool targets(const std::string& module) const;
};

// Kaiming-uniform(a = sqrt(5)) values for an (rows, fan_in) matrix: uniform in [-1/sqrt(fan_in), 1/sqrt(fan_in)).
void kaiming_uniform_a_sqrt5(float* out, int64_t rows, int64_t fan_in, std::mt19937_64& rng);

// w (out, in) += scaling * b (out, r) @ a (r, in); row-major float buffers.
void merge_into(float* w, const float* a, const float* b, int64_t out, int64_t in, int64_t r, double scaling);

}  // namespace llmft::lora
