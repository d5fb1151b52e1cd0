// The decoder's building blocks as explicit forward and backward functions on ATen tensors (no autograd): RMSNorm,
// rotary embeddings, linear layers with an optional LoRA branch, SwiGLU, causal attention over variable-length
// documents, and a chunked cross-entropy over the vocabulary. Each backward is the exact derivative of its forward;
// tests/model compares every gradient with PyTorch autograd.
//
// Dims: N = tokens in the batch (documents concatenated, no padding), C = hidden size, H = query heads,
// K = key/value heads, D = head dim, F = MLP size, V = vocabulary, R = LoRA rank, L = one document's length.
#pragma once

#include <cstdint>
#include <optional>
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

// ---- Mixture of experts: top-k routing over E SwiGLU experts (Qwen3MoE) ----
// probs = softmax(x Wr^T) in fp32; each token goes to its top_k experts with weights w = the top-k probabilities
// (divided by their sum with norm_topk_prob), cast to x's dtype; y = sum_j w_j down_e(silu(gate_e(x)) * up_e(x)).
// The token-expert slots are sorted by expert, so each expert's tokens are one contiguous block of rows: one matrix
// product per expert over all of its tokens (the layout a grouped-GEMM kernel takes: sorted rows plus offsets).
// Dims: E experts, k = top_k, S = N * k slots, Fe the expert MLP size.
struct ExpertWeights {
  LinearWeights gate, up, down;     // (Fe, C), (Fe, C), (C, Fe), each with its LoRA pair when targeted
  at::Tensor w_gate_up, dw_gate_up;  // (2 Fe, C): gate and up back to back (undefined when stored or apart)
};
struct MoeWeights {
  at::Tensor router;   // (E, C)
  at::Tensor drouter;  // fp32 gradient, or undefined when the router is frozen
  std::vector<ExpertWeights> experts;
  int64_t top_k = 1;
  bool norm_topk_prob = false;
  // Each expert's block of rows padded with zero rows to a multiple of this. oneDNN (ATen's bf16 products on CPU)
  // builds a kernel for every new row count: ragged counts made a bf16 step 3x slower than with blocks of 64
  // (bench/moe.sh). 1: no padding (fp32, whose MKL products take any shape).
  int64_t row_granule = 1;
};
struct MoeCache {
  at::Tensor x;                  // (N, C) input
  at::Tensor probs;              // (N, E) fp32 routing probabilities
  at::Tensor top_idx, top_prob;  // (N, k) chosen experts and their probabilities (fp32)
  at::Tensor weights;            // (N, k) routing weights, fp32 (what is cast and applied)
  at::Tensor order;              // (S) slot t * k + j of each sorted row
  at::Tensor token;              // (S) token of each sorted row
  at::Tensor row;                // (S) where each sorted row sits in the experts' padded blocks
  std::vector<int64_t> offsets;  // (E + 1) first padded row of each expert
  at::Tensor ys;                 // (S, C) expert outputs before weighting, sorted
  std::vector<LinearCache> gate, up, down;
  std::vector<at::Tensor> g, u;  // per expert (rows_e, Fe)
};
// Routing statistics for the load-balancing loss, summed over layers: top-k assignments and probabilities per expert.
struct MoeStats {
  at::Tensor counts, prob_sum;  // (E) in the probabilities' dtype (fp32; fp64 in gradient checks)
  int64_t rows = 0;             // tokens counted (N per MoE layer)
  void add(const at::Tensor& top_idx, const at::Tensor& probs);
};
at::Tensor moe_forward(const at::Tensor& x, MoeWeights& w, MoeCache* cache, MoeStats* stats);  // (N, C)
// dx for dy (N, C); adds expert, LoRA and (when trained) router gradients. dprobs_extra, when defined, is (E) fp32
// added to d(loss)/d(probs) of every token: the load-balancing loss's gradient.
at::Tensor moe_backward(const at::Tensor& dy, MoeWeights& w, const MoeCache& cache, const at::Tensor& dprobs_extra);

// ---- Causal attention within documents ----
// q (N, H, D), k and v (N, K, D); doc_starts: the first token of every document, ascending, plus N at the end.
// Tokens attend to earlier tokens of their own document only (and, with window > 0, to the last `window` of them).
// The backward recomputes the probabilities from q, k and the saved log-sum-exp, so memory stays O(N).
//
// The kernel is chosen per device and dtype (attention_kernel_for), one implementation each:
//   kCpuFlash        ATen's fused CPU flash attention, one document at a time (the CPU's, every dtype);
//   kCudaFlashVarlen ATen's variable-length flash attention on the GPU: the packed rows with cumulative document
//                    offsets in one launch, key/value heads shared natively (no repeat), never a (T x T) mask
//                    (bf16 / fp16, head dim <= 256, a multiple of 8);
//   kReference       softmax(q k^T / sqrt(D) + mask) v written out per document on any device (fp32 / fp64 on a GPU,
//                    and the reference the tests hold the other two to).
enum class AttentionKernel { kCpuFlash, kCudaFlashVarlen, kReference };
AttentionKernel attention_kernel_for(const at::Tensor& q);
const char* attention_kernel_name(AttentionKernel k);
struct AttentionCache {
  AttentionKernel kernel = AttentionKernel::kCpuFlash;
  at::Tensor q, k, v, out;  // inputs and output
  at::Tensor lse;           // (H, N) fp32 log-sum-exp of every query row
  at::Tensor cu_seqlens;    // kCudaFlashVarlen: (documents + 1) int32 offsets on the device
  int64_t max_len = 0;      //   and the longest document
  at::Tensor rng_state, unused;  //   the kernel's own state, handed back to its backward
};
// `kernel`: which implementation (default: attention_kernel_for(q)); the backward uses the forward's.
at::Tensor attention_forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                             const std::vector<int64_t>& doc_starts, int64_t window, AttentionCache* cache,
                             std::optional<AttentionKernel> kernel = std::nullopt);  // (N, H, D)
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
