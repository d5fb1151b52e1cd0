#include "model/ops.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <tuple>

#include "util/check.hpp"

namespace llmft::model {

namespace {

// dst += a @ b. A weight gradient of bf16 operands into an fp32 buffer: the product in bf16 (AMX / tensor-core
// matrix units, fp32 inside), rounded once and accumulated in fp32 across micro-batches; casting the operands to
// fp32 instead ran the largest products of a bf16 full fine-tune at the fp32 rate (a third of a step).
void add_mm(at::Tensor& dst, const at::Tensor& a, const at::Tensor& b) {
  if (a.scalar_type() == dst.scalar_type() && b.scalar_type() == dst.scalar_type()) dst.addmm_(a, b);
  else if (a.scalar_type() == b.scalar_type() && at::isReducedFloatingType(a.scalar_type())) dst.add_(at::mm(a, b));
  else dst.addmm_(a.to(dst.scalar_type()), b.to(dst.scalar_type()));
}

// Softmax and log-sum-exp precision: fp32 as transformers (fp64 in gradient checks).
at::ScalarType acc_type(const at::Tensor& x) { return x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat; }

at::Tensor rotate_half(const at::Tensor& x) {  // cat(-x2, x1)
  int64_t h = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, h, h), x.narrow(-1, 0, h)}, -1);
}

at::Tensor rotate_half_t(const at::Tensor& x) {  // the transpose of rotate_half: cat(x2, -x1)
  int64_t h = x.size(-1) / 2;
  return at::cat({x.narrow(-1, h, h), -x.narrow(-1, 0, h)}, -1);
}

}  // namespace

// ---- RMSNorm ----

namespace {
// transformers normalizes in fp32 (fp64 stays fp64 in our gradient checks).
at::ScalarType norm_type(const at::Tensor& x) { return x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat; }
}  // namespace

at::Tensor rmsnorm_forward(const at::Tensor& x, const at::Tensor& w, double eps, RmsNormCache* cache) {
  at::Tensor xf = x.to(norm_type(x));                             // (N, C)
  at::Tensor rstd = at::rsqrt(xf.pow(2).mean(-1, true) + eps);    // (N, 1)
  at::Tensor xhat = xf * rstd;                                    // (N, C)
  if (cache) {
    cache->xhat = xhat;
    cache->rstd = rstd;
  }
  return w * xhat.to(x.scalar_type());
}

at::Tensor rmsnorm_backward(const at::Tensor& dy, const at::Tensor& w, const RmsNormCache& cache, at::Tensor* dw) {
  at::Tensor dyf = dy.to(norm_type(dy));                                  // (N, C)
  if (dw && dw->defined()) dw->add_((dyf * cache.xhat).sum(0).to(dw->scalar_type()));
  at::Tensor dxhat = dyf * w.to(norm_type(dy));                          // (N, C)
  at::Tensor dot = (dxhat * cache.xhat).mean(-1, true);                  // (N, 1)
  return (cache.rstd * (dxhat - cache.xhat * dot)).to(dy.scalar_type());
}

// ---- RoPE ----

void rope_tables(const Rope& rope, const at::Tensor& positions, at::ScalarType dtype, at::Tensor* cos, at::Tensor* sin) {
  at::ScalarType t = dtype == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor freqs = positions.to(t).unsqueeze(1) * rope.inv_freq.to(t).unsqueeze(0);  // (N, D/2)
  at::Tensor emb = at::cat({freqs, freqs}, -1);                                           // (N, D)
  *cos = emb.cos().to(dtype);
  *sin = emb.sin().to(dtype);
}

at::Tensor rope_apply(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  return x * cos.unsqueeze(1) + rotate_half(x) * sin.unsqueeze(1);  // (N, heads, D)
}

at::Tensor rope_backward(const at::Tensor& dy, const at::Tensor& cos, const at::Tensor& sin) {
  return dy * cos.unsqueeze(1) + rotate_half_t(dy * sin.unsqueeze(1));
}

// ---- Linear + LoRA ----

namespace {

// The LoRA branch s * (drop(x) A^T) B^T added into y (N, out).
void lora_forward_into(at::Tensor& y, const at::Tensor& x, const LinearWeights& p, at::Generator* gen, LinearCache* cache) {
  at::Tensor xd = x, keep;
  if (gen && p.dropout > 0) {
    keep = at::empty_like(x).bernoulli_(1.0 - p.dropout, *gen).div_(1.0 - p.dropout);
    xd = x * keep;
  }
  at::Tensor z = at::mm(xd, p.lora_a.t());  // (N, R)
  y.addmm_(z, p.lora_b.t(), 1.0, p.scaling);  // y += s * z B^T, accumulated by the GEMM itself (no (N, out) temporary)
  if (cache) {
    cache->xd = xd;
    cache->keep = keep;
    cache->z = z;
  }
}

// Gradients of the LoRA branch for dy (N, out); adds its input gradient into *dx when dx is given.
// The scaling s is applied to the rank-R products, never to an (N, out) or (N, in) tensor.
void lora_backward(const at::Tensor& dy, LinearWeights& p, const LinearCache& cache, at::Tensor* dx) {
  if (p.dlora_b.defined()) {  // dB += s dy^T z
    if (p.dlora_b.scalar_type() == dy.scalar_type()) p.dlora_b.addmm_(dy.t(), cache.z, 1.0, p.scaling);
    else add_mm(p.dlora_b, dy.t() * p.scaling, cache.z);
  }
  at::Tensor dz = at::mm(dy, p.lora_b).mul_(p.scaling);  // (N, R)
  if (p.dlora_a.defined()) add_mm(p.dlora_a, dz.t(), cache.xd);
  if (dx) {
    if (cache.keep.defined()) dx->add_(at::mm(dz, p.lora_a) * cache.keep);
    else dx->addmm_(dz, p.lora_a);  // (N, in) += dz A
  }
}

}  // namespace

at::Tensor linear_forward(const at::Tensor& x, const LinearWeights& p, at::Generator* gen, LinearCache* cache) {
  at::Tensor y;  // (N, out)
  if (p.stored) {
    y = stored_matmul_t(x, *p.stored);
    if (p.b.defined()) y.add_(p.b);
  } else {
    y = p.b.defined() ? at::addmm(p.b, x, p.w.t()) : at::mm(x, p.w.t());
  }
  if (cache) cache->x = x;
  if (p.lora_a.defined()) lora_forward_into(y, x, p, gen, cache);
  return y;
}

at::Tensor linear_backward(const at::Tensor& dy, LinearWeights& p, const LinearCache& cache, bool need_dx) {
  at::Tensor dx;  // (N, in)
  if (need_dx) dx = p.stored ? stored_matmul(dy, *p.stored) : at::mm(dy, p.w);
  if (p.dw.defined()) add_mm(p.dw, dy.t(), cache.x);
  if (p.db.defined()) p.db.add_(dy.sum(0).to(p.db.scalar_type()));
  if (p.lora_a.defined()) lora_backward(dy, p, cache, need_dx ? &dx : nullptr);
  return dx;
}

std::vector<at::Tensor> fused_linear_forward(const at::Tensor& x, const at::Tensor& w_fused,
                                             const std::vector<LinearWeights*>& parts, at::Generator* gen,
                                             const std::vector<LinearCache*>& caches) {
  at::Tensor y = at::mm(x, w_fused.t());  // (N, sum out)
  std::vector<at::Tensor> out;
  int64_t at_ = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    const LinearWeights& p = *parts[i];
    at::Tensor yi = y.narrow(1, at_, p.w.size(0));  // (N, out_i)
    at_ += p.w.size(0);
    if (p.b.defined()) yi.add_(p.b);
    if (caches[i]) caches[i]->x = x;
    if (p.lora_a.defined()) lora_forward_into(yi, x, p, gen, caches[i]);
    out.push_back(yi);
  }
  return out;
}

at::Tensor fused_linear_backward(const std::vector<at::Tensor>& dys, const at::Tensor& w_fused, at::Tensor& dw_fused,
                                 const std::vector<LinearWeights*>& parts, const std::vector<LinearCache*>& caches) {
  at::Tensor dy = at::cat(dys, 1);  // (N, sum out)
  at::Tensor dx = at::mm(dy, w_fused);
  if (dw_fused.defined()) add_mm(dw_fused, dy.t(), caches[0]->x);
  for (size_t i = 0; i < parts.size(); ++i) {
    LinearWeights& p = *parts[i];
    if (p.db.defined()) p.db.add_(dys[i].sum(0).to(p.db.scalar_type()));
    if (p.lora_a.defined()) lora_backward(dys[i], p, *caches[i], &dx);
  }
  return dx;
}

// ---- SwiGLU ----

at::Tensor swiglu_forward(const at::Tensor& g, const at::Tensor& u) { return at::silu(g) * u; }

void swiglu_backward(const at::Tensor& da, const at::Tensor& g, const at::Tensor& u, at::Tensor* dg, at::Tensor* du) {
  at::Tensor sig = at::sigmoid(g);
  *du = da * (g * sig);
  *dg = da * u * sig * (1 + g * (1 - sig));
}

// ---- Mixture of experts ----

void MoeStats::add(const at::Tensor& top_idx, const at::Tensor& probs) {
  const int64_t E = probs.size(1);
  at::Tensor p = probs.sum(0);  // fp32 (fp64 in gradient checks)
  at::Tensor c = at::bincount(top_idx.reshape({-1}), {}, E).to(p.scalar_type());
  counts = counts.defined() ? counts + c : c;
  prob_sum = prob_sum.defined() ? prob_sum + p : p;
  rows += probs.size(0);
}

namespace {
// One expert's SwiGLU MLP on its rows (n, C) -> (n, C).
at::Tensor expert_forward(const at::Tensor& x, ExpertWeights& e, LinearCache* cg, LinearCache* cu, LinearCache* cd,
                          at::Tensor* g_out, at::Tensor* u_out) {
  at::Tensor g, u;  // (n, Fe)
  if (e.w_gate_up.defined()) {
    auto gu = fused_linear_forward(x, e.w_gate_up, {&e.gate, &e.up}, nullptr, {cg, cu});
    g = gu[0];
    u = gu[1];
  } else {
    g = linear_forward(x, e.gate, nullptr, cg);
    u = linear_forward(x, e.up, nullptr, cu);
  }
  if (g_out) *g_out = g;
  if (u_out) *u_out = u;
  return linear_forward(swiglu_forward(g, u), e.down, nullptr, cd);
}
}  // namespace

at::Tensor moe_forward(const at::Tensor& x, MoeWeights& w, MoeCache* c, MoeStats* stats) {
  const int64_t N = x.size(0), C = x.size(1), E = w.router.size(0), k = w.top_k;
  at::Tensor logits = at::mm(x, w.router.t());                          // (N, E) in x's dtype, as transformers
  at::Tensor probs = at::softmax(logits, -1, acc_type(x));              // (N, E) fp32
  auto top = at::topk(probs, k, -1);
  at::Tensor top_prob = std::get<0>(top), top_idx = std::get<1>(top);  // (N, k)
  at::Tensor weights = w.norm_topk_prob ? top_prob / top_prob.sum(-1, true) : top_prob;
  if (stats) stats->add(top_idx, probs);
  // Slots sorted by expert (stable: tokens in order within an expert).
  at::Tensor order = at::argsort(top_idx.reshape({-1}), /*stable=*/true);        // (S)
  at::Tensor token = at::div(order, k, "floor");                                  // (S)
  at::Tensor counts = at::bincount(top_idx.reshape({-1}), {}, E).to(at::kLong).cpu();  // (E), read on the host
  const int64_t G = std::max<int64_t>(w.row_granule, 1);  // each expert's rows padded to a multiple of G
  std::vector<int64_t> offsets(static_cast<size_t>(E) + 1, 0), rows;
  const int64_t* cnt = counts.data_ptr<int64_t>();
  rows.reserve(static_cast<size_t>(order.numel()));
  for (int64_t e = 0; e < E; ++e) {
    const auto i = static_cast<size_t>(e);
    for (int64_t j = 0; j < cnt[e]; ++j) rows.push_back(offsets[i] + j);
    offsets[i + 1] = offsets[i] + (cnt[e] + G - 1) / G * G;
  }
  at::Tensor row = at::tensor(rows, at::kLong).to(x.device());  // (S) row of each sorted slot in the padded blocks
  at::Tensor xs = at::zeros({offsets.back(), C}, x.options()).index_copy_(0, row, x.index_select(0, token));
  at::Tensor ys = at::empty_like(xs);  // (S padded, C)
  if (c) {
    c->gate.assign(static_cast<size_t>(E), {});
    c->up.assign(static_cast<size_t>(E), {});
    c->down.assign(static_cast<size_t>(E), {});
    c->g.assign(static_cast<size_t>(E), {});
    c->u.assign(static_cast<size_t>(E), {});
  }
  for (int64_t e = 0; e < E; ++e) {
    const auto i = static_cast<size_t>(e);
    const int64_t lo = offsets[i], n = offsets[i + 1] - lo;
    if (n == 0) continue;
    ys.narrow(0, lo, n).copy_(expert_forward(xs.narrow(0, lo, n), w.experts[i], c ? &c->gate[i] : nullptr,
                                             c ? &c->up[i] : nullptr, c ? &c->down[i] : nullptr,
                                             c ? &c->g[i] : nullptr, c ? &c->u[i] : nullptr));
  }
  if (G > 1) ys = ys.index_select(0, row);  // (S, C)
  at::Tensor ws = weights.reshape({-1}).index_select(0, order).to(x.scalar_type()).unsqueeze(1);  // (S, 1)
  at::Tensor y = at::zeros({N, C}, x.options()).index_add_(0, token, ys * ws);
  if (c) {
    c->x = x;
    c->probs = probs;
    c->top_idx = top_idx;
    c->top_prob = top_prob;
    c->weights = weights;
    c->order = order;
    c->token = token;
    c->row = row;
    c->offsets = std::move(offsets);
    c->ys = ys;
  }
  return y;
}

at::Tensor moe_backward(const at::Tensor& dy, MoeWeights& w, const MoeCache& c, const at::Tensor& dprobs_extra) {
  const int64_t N = dy.size(0), k = w.top_k, E = w.router.size(0);
  const at::ScalarType acc = acc_type(dy);
  at::Tensor dys = dy.index_select(0, c.token);                                                   // (S, C)
  at::Tensor ws = c.weights.reshape({-1}).index_select(0, c.order).to(dy.scalar_type()).unsqueeze(1);  // (S, 1)
  // d(loss)/d(weight) of every sorted slot: <dy of its token, its expert's output>.
  at::Tensor dws = (dys.to(acc) * c.ys.to(acc)).sum(1);  // (S)
  const int64_t padded = c.offsets.back();
  const bool pad = padded != c.ys.size(0);
  at::Tensor dxs = at::zeros({padded, dy.size(1)}, dy.options());  // (S padded, C)
  at::Tensor dye = dys * ws;                                        // (S, C)
  if (pad) dye = at::zeros_like(dxs).index_copy_(0, c.row, dye);
  for (int64_t e = 0; e < E; ++e) {
    const auto i = static_cast<size_t>(e);
    const int64_t lo = c.offsets[i], n = c.offsets[i + 1] - lo;
    if (n == 0) continue;
    ExpertWeights& ex = w.experts[i];
    at::Tensor da = linear_backward(dye.narrow(0, lo, n), ex.down, c.down[i]);  // (n, Fe)
    at::Tensor dg, du;
    swiglu_backward(da, c.g[i], c.u[i], &dg, &du);
    at::Tensor dx;
    if (ex.w_gate_up.defined()) {
      LinearCache* caches[2] = {const_cast<LinearCache*>(&c.gate[i]), const_cast<LinearCache*>(&c.up[i])};
      dx = fused_linear_backward({dg, du}, ex.w_gate_up, ex.dw_gate_up, {&ex.gate, &ex.up}, {caches[0], caches[1]});
    } else {
      dx = linear_backward(dg, ex.gate, c.gate[i]);
      dx.add_(linear_backward(du, ex.up, c.up[i]));
    }
    dxs.narrow(0, lo, n).copy_(dx);
  }
  if (pad) dxs = dxs.index_select(0, c.row);
  at::Tensor dx = at::zeros_like(dy).index_add_(0, c.token, dxs);  // (N, C)
  // Back to the routing weights (N, k), their normalisation, the softmax and the router's product.
  at::Tensor dw = at::empty({N * k}, dws.options()).index_copy_(0, c.order, dws).view({N, k});
  at::Tensor dtop = dw;
  if (w.norm_topk_prob) {  // w = p / sum(p): dp_j = (dw_j - sum_i dw_i w_i) / sum(p)
    at::Tensor sum = c.top_prob.sum(-1, true);
    dtop = (dw - (dw * c.weights).sum(-1, true)) / sum;
  }
  at::Tensor dprobs = at::zeros_like(c.probs).scatter_(1, c.top_idx, dtop);  // (N, E)
  if (dprobs_extra.defined()) dprobs.add_(dprobs_extra.to(dprobs.scalar_type()).unsqueeze(0));
  at::Tensor dlogits = c.probs * (dprobs - (dprobs * c.probs).sum(-1, true));  // (N, E) softmax backward
  if (w.drouter.defined()) add_mm(w.drouter, dlogits.t().to(w.drouter.scalar_type()), c.x.to(w.drouter.scalar_type()));
  dx.add_(at::mm(dlogits.to(dy.scalar_type()), w.router));
  return dx;
}

// ---- Attention ----

namespace {

// A sliding window's attention mask for one document (additive -inf outside the causal window, (L, L) in x's dtype),
// or none when the window covers the document (plain causal attention).
std::optional<at::Tensor> window_mask(int64_t L, int64_t window, const at::Tensor& x) {
  if (window <= 0 || window >= L) return std::nullopt;
  const auto inf = -std::numeric_limits<double>::infinity();
  return at::full({L, L}, inf, x.options()).triu(1) + at::full({L, L}, inf, x.options()).tril(-window);
}

// k (L, K, D) -> (H, L, D), each key/value head repeated for its H/K query heads (transformers' repeat_kv).
at::Tensor repeat_heads(const at::Tensor& k, int64_t H) {
  at::Tensor t = k.transpose(0, 1);  // (K, L, D)
  int64_t K = t.size(0), rep = H / K;
  if (rep == 1) return t;
  return t.unsqueeze(1).expand({K, rep, t.size(1), t.size(2)}).reshape({H, t.size(1), t.size(2)});
}


// (H, L, D) summed back over each key/value head's query heads -> (L, K, D).
at::Tensor reduce_heads(const at::Tensor& g, int64_t K) {
  int64_t H = g.size(0), rep = H / K;
  at::Tensor r = rep == 1 ? g : g.view({K, rep, g.size(1), g.size(2)}).sum(1);
  return r.transpose(0, 1);
}

}  // namespace

AttentionKernel attention_kernel_for(const at::Tensor& q) {
  if (q.is_cpu()) return AttentionKernel::kCpuFlash;
  const int64_t D = q.size(-1);
  const bool half = q.scalar_type() == at::kBFloat16 || q.scalar_type() == at::kHalf;
  if (q.is_cuda() && half && D % 8 == 0 && D <= 256) return AttentionKernel::kCudaFlashVarlen;
  return AttentionKernel::kReference;
}

const char* attention_kernel_name(AttentionKernel k) {
  switch (k) {
    case AttentionKernel::kCpuFlash: return "cpu-flash";
    case AttentionKernel::kCudaFlashVarlen: return "cuda-flash-varlen";
    case AttentionKernel::kReference: return "reference";
  }
  return "?";
}

namespace {

// The flash kernel's window arguments: it attends to keys i - left .. i + right; ours to the last `window` tokens.
std::optional<int64_t> window_left(int64_t window) { return window > 0 ? std::optional<int64_t>(window - 1) : std::nullopt; }
std::optional<int64_t> window_right(int64_t window) { return window > 0 ? std::optional<int64_t>(0) : std::nullopt; }

// The documents' cumulative offsets (int32) on `device`, for the varlen kernel: the copy is made once per batch and
// device on this thread and reused by every layer, forward and backward (each copy from pageable memory would
// synchronise the stream).
const at::Tensor& cumulative_offsets(const std::vector<int64_t>& doc_starts, at::Device device) {
  thread_local std::vector<int64_t> starts;
  thread_local at::Tensor offsets;
  if (!offsets.defined() || starts != doc_starts || offsets.device() != device) {
    starts = doc_starts;
    offsets = at::tensor(std::vector<int32_t>(doc_starts.begin(), doc_starts.end()), at::kInt).to(device);
  }
  return offsets;
}

// One document's additive mask for the reference kernel: 0 where a query sees a key, -inf elsewhere, (L, L) fp32.
at::Tensor reference_mask(int64_t L, int64_t window, const at::TensorOptions& o) {
  const auto inf = -std::numeric_limits<double>::infinity();
  at::Tensor m = at::full({L, L}, inf, o).triu(1);
  if (window > 0 && window < L) m.add_(at::full({L, L}, inf, o).tril(-window));
  return m;
}

}  // namespace

// CPU: each document through ATen's fused CPU flash attention (tiled, online softmax: no (H, L, L) scores in memory),
// whose backward recomputes the probabilities from the saved log-sum-exp. Against the written-out softmax(QK^T)V it
// had replaced: 2.65x faster in fp32 and 2.17x in bf16 per (document, layer) at H 8, L 512, D 64 on this machine
// (bench/attention.py, bench/README.md). A sliding window goes in as an additive mask; otherwise the kernel's own
// causal masking. GPU: every document in one varlen flash launch. Reference: per document, written out.
at::Tensor attention_forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                             const std::vector<int64_t>& doc_starts, int64_t window, AttentionCache* cache,
                             std::optional<AttentionKernel> kernel) {
  const int64_t N = q.size(0), H = q.size(1), D = q.size(2);
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  LLMFT_ASSERT(!doc_starts.empty() && doc_starts.back() == N);
  const AttentionKernel kind = kernel.value_or(attention_kernel_for(q));
  at::Tensor out, lse, cu, rng_state, unused;
  int64_t max_len = 0;
  if (kind == AttentionKernel::kCudaFlashVarlen) {
    for (size_t d = 0; d + 1 < doc_starts.size(); ++d) max_len = std::max(max_len, doc_starts[d + 1] - doc_starts[d]);
    cu = cumulative_offsets(doc_starts, q.device());  // (documents + 1)
    auto r = at::_flash_attention_forward(q.contiguous(), k.contiguous(), v.contiguous(), cu, cu, max_len, max_len, 0.0,
                                          /*is_causal=*/true, /*return_debug_mask=*/false, scale, window_left(window),
                                          window_right(window));
    out = std::get<0>(r);  // (N, H, D)
    lse = std::get<1>(r);
    rng_state = std::get<2>(r);
    unused = std::get<3>(r);
  } else {
    out = at::empty_like(q);                                 // (N, H, D)
    lse = at::empty({H, N}, q.options().dtype(acc_type(q)));  // (H, N)
    for (size_t d = 0; d + 1 < doc_starts.size(); ++d) {
      int64_t s = doc_starts[d], L = doc_starts[d + 1] - s;
      if (L == 0) continue;
      at::Tensor qd = q.narrow(0, s, L).transpose(0, 1);   // (H, L, D)
      at::Tensor kd = repeat_heads(k.narrow(0, s, L), H);  // (H, L, D)
      at::Tensor vd = repeat_heads(v.narrow(0, s, L), H);  // (H, L, D)
      at::Tensor o, l;
      if (kind == AttentionKernel::kCpuFlash) {
        const auto mask = window_mask(L, window, q);
        std::tie(o, l) = at::_scaled_dot_product_flash_attention_for_cpu(qd.unsqueeze(0), kd.unsqueeze(0),
                                                                         vd.unsqueeze(0), 0.0, !mask.has_value(), mask,
                                                                         scale);
        o = o.squeeze(0);
        l = l.squeeze(0);
      } else {
        const at::ScalarType acc = acc_type(q);  // in fp32 from the products on, as the backward recomputes them
        at::Tensor scores = at::matmul(qd.to(acc), kd.to(acc).transpose(1, 2)).mul_(scale);  // (H, L, L)
        scores.add_(reference_mask(L, window, scores.options()));
        l = at::logsumexp(scores, -1);                                                 // (H, L)
        o = at::matmul(scores.sub_(l.unsqueeze(-1)).exp_(), vd.to(acc)).to(q.scalar_type());  // (H, L, D)
      }
      out.narrow(0, s, L).copy_(o.transpose(0, 1));
      lse.narrow(1, s, L).copy_(l);
    }
  }
  if (cache) {
    cache->kernel = kind;
    cache->q = q;
    cache->k = k;
    cache->v = v;
    cache->out = out;
    cache->lse = lse;
    cache->cu_seqlens = cu;
    cache->max_len = max_len;
    cache->rng_state = rng_state;
    cache->unused = unused;
  }
  return out;
}

void attention_backward(const at::Tensor& dout, const AttentionCache& c, const std::vector<int64_t>& doc_starts,
                        int64_t window, at::Tensor* dq, at::Tensor* dk, at::Tensor* dv) {
  const int64_t H = c.q.size(1), K = c.k.size(1), D = c.q.size(2);
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  if (c.kernel == AttentionKernel::kCudaFlashVarlen) {
    auto r = at::_flash_attention_backward(dout.contiguous(), c.q.contiguous(), c.k.contiguous(), c.v.contiguous(),
                                           c.out, c.lse, c.cu_seqlens, c.cu_seqlens, c.max_len, c.max_len, 0.0,
                                           /*is_causal=*/true, c.rng_state, c.unused, scale, window_left(window),
                                           window_right(window));
    *dq = std::get<0>(r);  // (N, H, D)
    *dk = std::get<1>(r);  // (N, K, D): the query heads of each key/value head summed by the kernel
    *dv = std::get<2>(r);
    return;
  }
  *dq = at::zeros_like(c.q);
  *dk = at::zeros_like(c.k);
  *dv = at::zeros_like(c.v);
  for (size_t d = 0; d + 1 < doc_starts.size(); ++d) {
    int64_t s = doc_starts[d], L = doc_starts[d + 1] - s;
    if (L == 0) continue;
    at::Tensor qd = c.q.narrow(0, s, L).transpose(0, 1);    // (H, L, D)
    at::Tensor kd = repeat_heads(c.k.narrow(0, s, L), H);   // (H, L, D)
    at::Tensor vd = repeat_heads(c.v.narrow(0, s, L), H);   // (H, L, D)
    at::Tensor od = c.out.narrow(0, s, L).transpose(0, 1);  // (H, L, D)
    at::Tensor go = dout.narrow(0, s, L).transpose(0, 1);   // (H, L, D)
    at::Tensor ld = c.lse.narrow(1, s, L);                  // (H, L)
    at::Tensor gq, gk, gv;
    if (c.kernel == AttentionKernel::kCpuFlash) {
      const auto mask = window_mask(L, window, c.q);
      std::tie(gq, gk, gv) = at::_scaled_dot_product_flash_attention_for_cpu_backward(
          go.unsqueeze(0), qd.unsqueeze(0), kd.unsqueeze(0), vd.unsqueeze(0), od.unsqueeze(0), ld.unsqueeze(0), 0.0,
          !mask.has_value(), mask, scale);
      gq = gq.squeeze(0);
      gk = gk.squeeze(0);
      gv = gv.squeeze(0);
    } else {
      // p = exp(s - lse); dv = p^T do; dp = do v^T; ds = p (dp - rowsum(do o)); dq = ds k / sqrt(D); dk = ds^T q / sqrt(D)
      const at::ScalarType acc = acc_type(c.q);
      at::Tensor qa = qd.to(acc), ka = kd.to(acc), va = vd.to(acc), ga = go.to(acc);
      at::Tensor sc = at::matmul(qa, ka.transpose(1, 2)).mul_(scale);                        // (H, L, L)
      sc.add_(reference_mask(L, window, sc.options()));
      at::Tensor p = sc.sub_(ld.to(acc).unsqueeze(-1)).exp_();                               // (H, L, L)
      at::Tensor delta = (ga * od.to(acc)).sum(-1, true);                                    // (H, L, 1)
      at::Tensor ds = at::matmul(ga, va.transpose(1, 2)).sub_(delta).mul_(p);                // (H, L, L)
      gv = at::matmul(p.transpose(1, 2), ga);                                                // (H, L, D)
      gq = at::matmul(ds, ka).mul_(scale);
      gk = at::matmul(ds.transpose(1, 2), qa).mul_(scale);
    }
    dq->narrow(0, s, L).copy_(gq.transpose(0, 1));
    dk->narrow(0, s, L).copy_(reduce_heads(gk.contiguous(), K));
    dv->narrow(0, s, L).copy_(reduce_heads(gv.contiguous(), K));
  }
}

// ---- Cross-entropy ----

double cross_entropy_forward_backward(const at::Tensor& h, const at::Tensor& targets, const at::Tensor& w,
                                      at::Tensor* dh, at::Tensor* dw, int64_t chunk_rows, at::Tensor* workspace) {
  const int64_t M = h.size(0);
  const at::ScalarType acc = h.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  if (dh) *dh = at::empty_like(h);
  if (M == 0) return 0;
  // Summed where the logits are, in fp64, and read once (one device synchronisation per call, not per chunk).
  at::Tensor total = at::zeros({}, h.options().dtype(at::kDouble));
  // One buffer for every chunk (and, with a workspace, every call): the logits, then in place their log-softmax,
  // then the softmax. Mapping (chunk, V) afresh each time cost more in page faults than the matrix products
  // themselves on a 128k vocabulary. ATen's fused last-dimension log-softmax is one exp pass per row (logsumexp +
  // sub + exp was two, and a temporary: 3% of a LoRA step, bench/README.md); it reads each row whole before writing
  // it, so it runs in place (the numerics tests against transformers would catch a libtorch where it does not).
  const int64_t rows = std::min(chunk_rows, M), need = rows * w.size(0);
  at::Tensor local;
  at::Tensor& ws = workspace ? *workspace : local;
  if (!ws.defined() || ws.numel() < need || ws.scalar_type() != acc) ws = at::empty({need}, h.options().dtype(acc));
  at::Tensor buf = ws.narrow(0, 0, need).view({rows, w.size(0)});
  for (int64_t i = 0; i < M; i += chunk_rows) {
    int64_t n = std::min(chunk_rows, M - i);
    at::Tensor hc = h.narrow(0, i, n);                                   // (n, C)
    at::Tensor tc = targets.narrow(0, i, n);                             // (n)
    at::Tensor logits = buf.narrow(0, 0, n);                             // (n, V)
    if (h.scalar_type() == acc) {
      at::mm_out(logits, hc, w.t());
    } else {
      logits.copy_(at::mm(hc, w.t()));
    }
    at::Tensor lp = at::_log_softmax_out(logits, logits, 1, false);     // (n, V) log-softmax, in place
    total.sub_(lp.gather(1, tc.unsqueeze(1)).sum().to(at::kDouble));
    if (!dh) continue;
    at::Tensor g = lp.exp_();                                            // softmax (n, V), in place
    g.scatter_add_(1, tc.unsqueeze(1), at::full({n, 1}, -1.0, g.options()));
    at::Tensor gc = g.scalar_type() == h.scalar_type() ? g : g.to(h.scalar_type());
    at::Tensor dh_rows = dh->narrow(0, i, n);
    at::mm_out(dh_rows, gc, w);
    if (dw && dw->defined()) add_mm(*dw, gc.t(), hc);
  }
  return total.item<double>();
}

double cross_entropy_forward(const at::Tensor& h, const at::Tensor& targets, const at::Tensor& w, int64_t chunk_rows,
                             at::Tensor* workspace, int64_t* correct) {
  if (!correct) return cross_entropy_forward_backward(h, targets, w, nullptr, nullptr, chunk_rows, workspace);
  double total = 0;
  at::Tensor right = at::zeros({}, targets.options().dtype(at::kLong));
  for (int64_t i = 0; i < h.size(0); i += chunk_rows) {
    int64_t n = std::min(chunk_rows, h.size(0) - i);
    at::Tensor hc = h.narrow(0, i, n), tc = targets.narrow(0, i, n);
    total += cross_entropy_forward_backward(hc, tc, w, nullptr, nullptr, chunk_rows, workspace);
    at::Tensor logits = at::mm(hc, w.t());
    right.add_((logits.argmax(-1) == tc).sum());
  }
  *correct = right.item<int64_t>();
  return total;
}

}  // namespace llmft::model
