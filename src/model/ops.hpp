// The decoder's building blocks as explicit forward and backward functions on ATen tensors (no autograd): RMSNorm,
// rotary embeddings, linear layers with an optional LoRA branch, SwiGLU, causal attention over variable-length
// documents, and a chunked cross-entropy over the vocabulary. Each backward is the exact derivative of its forward;
// tests/model compares every gradient with PyTorch autograd.
//
// Dims: N = tokens in the batch (documents concatenated, no padding), C = hidden size, H = query heads,
// K = key/value heads, D = head dim, F = MLP size, V = vocabulary, R = LoRA rank, L = one document's length.
#pragma once

#include <cstdint>
#include <vector>

#include <ATen/ATen.h>

#include "model/stored_weight.hpp"

namespace llmft::model {

// ---- RMSNorm: y = x / sqrt(mean(x^2) + eps) * w, computed in fp32 as transformers does ----
struct RmsNormCache {
  at::Tensor xhat;  // (N, C) normalized input, fp32
  at::Tensor rstd;  // (N, 1) fp32
};
at::Tensor rmsnorm_forward(const at::Tensor& x, const at::Tensor& w, double eps, RmsNormCache* cache);  // (N, C)
// dx for dy; adds dw (fp32) into *dw when dw is defined.
at::Tensor rmsnorm_backward(const at::Tensor& dy, const at::Tensor& w, const RmsNormCache& cache, at::Tensor* dw);

// ---- Rotary position embeddings (transformers' rotate_half layout) ----
struct Rope {
  at::Tensor inv_freq;  // (D/2) fp32, llama3 / linear scaling already applied
};
// cos, sin for positions (N) int64: each (N, D) in `dtype`.
void rope_tables(const Rope& rope, const at::Tensor& positions, at::ScalarType dtype, at::Tensor* cos, at::Tensor* sin);
// x: (N, heads, D). y = x * cos + rotate_half(x) * sin; the backward is the same with sin negated.
at::Tensor rope_apply(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);
at::Tensor rope_backward(const at::Tensor& dy, const at::Tensor& cos, const at::Tensor& sin);

// ---- Linear with an optional LoRA branch: y = x W^T + b + s * (drop(x) A^T) B^T ----
struct LinearWeights {
  at::Tensor w;          // (out, in), or undefined when the frozen base is stored (quantised)
  const StoredWeight* stored = nullptr;  // that stored base, multiplied tile by tile
  at::Tensor b;          // (out) or undefined
  at::Tensor lora_a;     // (R, in) or undefined
  at::Tensor lora_b;     // (out, R)
  double scaling = 1.0;  // alpha / R (alpha / sqrt(R) with rsLoRA)
  double dropout = 0.0;
  // Gradient buffers (fp32; undefined when that parameter is frozen). Backward adds into them.
  at::Tensor dw, db, dlora_a, dlora_b;
};
struct LinearCache {
  at::Tensor x;     // (N, in) input
  at::Tensor xd;    // (N, in) dropped-out input of the LoRA branch (== x without dropout)
  at::Tensor keep;  // (N, in) dropout's keep / (1 - p), undefined without dropout
  at::Tensor z;     // (N, R) xd A^T
};
at::Tensor linear_forward(const at::Tensor& x, const LinearWeights& p, at::Generator* gen, LinearCache* cache);
at::Tensor linear_backward(const at::Tensor& dy, LinearWeights& p, const LinearCache& cache, bool need_dx = true);

// Linears that share their input and whose weights sit back to back (w_fused = [W_0; W_1; ...], (sum out, in)):
// one matrix product for all base outputs, one for the input gradient, one for the weight gradient (dw_fused,
// when the base is trained); biases and LoRA branches per part. Outputs are column slices of one (N, sum out) tensor.
std::vector<at::Tensor> fused_linear_forward(const at::Tensor& x, const at::Tensor& w_fused,
                                             const std::vector<LinearWeights*>& parts, at::Generator* gen,
                                             const std::vector<LinearCache*>& caches);
at::Tensor fused_linear_backward(const std::vector<at::Tensor>& dys, const at::Tensor& w_fused, at::Tensor& dw_fused,
                                 const std::vector<LinearWeights*>& parts, const std::vector<LinearCache*>& caches);

// ---- SwiGLU: a = silu(g) * u ----
at::Tensor swiglu_forward(const at::Tensor& g, const at::Tensor& u);
void swiglu_backward(const at::Tensor& da, const at::Tensor& g, const at::Tensor& u, at::Tensor* dg, at::Tensor* du);

// ---- Causal attention within documents ----
// q (N, H, D), k and v (N, K, D); doc_starts: the first token of every document, ascending, plus N at the end.
// Tokens attend to earlier tokens of their own document only (and, with window > 0, to the last `window` of them).
// The backward recomputes the probabilities from q, k and the saved log-sum-exp, so memory stays O(N).
struct AttentionCache {
  at::Tensor q, k, v, out;  // inputs and output
  at::Tensor lse;           // (H, N) fp32 log-sum-exp of every query row
};
at::Tensor attention_forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                             const std::vector<int64_t>& doc_starts, int64_t window, AttentionCache* cache);  // (N, H, D)
void attention_backward(const at::Tensor& dout, const AttentionCache& cache, const std::vector<int64_t>& doc_starts,
                        int64_t window, at::Tensor* dq, at::Tensor* dk, at::Tensor* dv);

// ---- Cross-entropy over the vocabulary, in chunks of rows (never materializes (N, V) logits) ----
// h (M, C): final hidden states of the M positions that have a target; targets (M) int64; w (V, C) the output
// embedding. Returns the SUM of the M token losses (fp64); fills dh (M, C) with d(sum)/dh, and adds d(sum)/dw into
// *dw (fp32) when it is defined.
// `workspace`, when given, holds the (chunk, V) logits buffer between calls (grown as needed).
double cross_entropy_forward_backward(const at::Tensor& h, const at::Tensor& targets, const at::Tensor& w,
                                      at::Tensor* dh, at::Tensor* dw, int64_t chunk_rows = 1024,
                                      at::Tensor* workspace = nullptr);
// Loss sum only (evaluation); *correct, when given, receives how many targets are the argmax of their logits.
double cross_entropy_forward(const at::Tensor& h, const at::Tensor& targets, const at::Tensor& w,
                             int64_t chunk_rows = 1024, at::Tensor* workspace = nullptr, int64_t* correct = nullptr);

}  // namespace llmft::model
