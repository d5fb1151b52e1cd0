#include "model/ops.hpp"

#include <cmath>
#include <limits>

#include "util/check.hpp"

namespace llmft::model {

namespace {

// dst (fp32) += a @ b, casting the operands to dst's dtype.
void add_mm(at::Tensor& dst, const at::Tensor& a, const at::Tensor& b) {
  dst.addmm_(a.to(dst.scalar_type()), b.to(dst.scalar_type()));
}

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
  y.add_(at::mm(z, p.lora_b.t()) * p.scaling);
  if (cache) {
    cache->xd = xd;
    cache->keep = keep;
    cache->z = z;
  }
}

// Gradients of the LoRA branch for dy (N, out); adds its input gradient into *dx when dx is given.
void lora_backward(const at::Tensor& dy, LinearWeights& p, const LinearCache& cache, at::Tensor* dx) {
  at::Tensor dyl = dy * p.scaling;                  // (N, out)
  if (p.dlora_b.defined()) add_mm(p.dlora_b, dyl.t(), cache.z);
  at::Tensor dz = at::mm(dyl, p.lora_b);            // (N, R)
  if (p.dlora_a.defined()) add_mm(p.dlora_a, dz.t(), cache.xd);
  if (dx) {
    at::Tensor dxd = at::mm(dz, p.lora_a);          // (N, in)
    dx->add_(cache.keep.defined() ? dxd * cache.keep : dxd);
  }
}

}  // namespace

at::Tensor linear_forward(const at::Tensor& x, const LinearWeights& p, at::Generator* gen, LinearCache* cache) {
  at::Tensor y = p.b.defined() ? at::addmm(p.b, x, p.w.t()) : at::mm(x, p.w.t());  // (N, out)
  if (cache) cache->x = x;
  if (p.lora_a.defined()) lora_forward_into(y, x, p, gen, cache);
  return y;
}

at::Tensor linear_backward(const at::Tensor& dy, LinearWeights& p, const LinearCache& cache, bool need_dx) {
  at::Tensor dx = need_dx ? at::mm(dy, p.w) : at::Tensor();  // (N, in)
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

// ---- Attention ----

namespace {

// The causal (and sliding-window) mask of one document as additive -inf, (L, L) fp32.
at::Tensor causal_mask(int64_t L, int64_t window, const at::TensorOptions& opt) {
  at::Tensor m = at::full({L, L}, -std::numeric_limits<float>::infinity(), opt).triu(1);
  if (window > 0 && window < L) m = m + at::full({L, L}, -std::numeric_limits<float>::infinity(), opt).tril(-window);
  return m;
}

// k (L, K, D) -> (H, L, D), each key/value head repeated for its H/K query heads (transformers' repeat_kv).
at::Tensor repeat_heads(const at::Tensor& k, int64_t H) {
  at::Tensor t = k.transpose(0, 1);  // (K, L, D)
  int64_t K = t.size(0), rep = H / K;
  if (rep == 1) return t;
  return t.unsqueeze(1).expand({K, rep, t.size(1), t.size(2)}).reshape({H, t.size(1), t.size(2)});
}

// (H, L, D) summed back over each key/value head's query heads -> (L, K, D).
// Softmax and log-sum-exp precision: fp32 as transformers (fp64 in gradient checks).
at::ScalarType acc_type(const at::Tensor& x) { return x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat; }

at::Tensor reduce_heads(const at::Tensor& g, int64_t K) {
  int64_t H = g.size(0), rep = H / K;
  at::Tensor r = rep == 1 ? g : g.view({K, rep, g.size(1), g.size(2)}).sum(1);
  return r.transpose(0, 1);
}

}  // namespace

at::Tensor attention_forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                             const std::vector<int64_t>& doc_starts, int64_t window, AttentionCache* cache) {
  const int64_t N = q.size(0), H = q.size(1), D = q.size(2);
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  at::Tensor out = at::empty_like(q);                                  // (N, H, D)
  at::Tensor lse = at::empty({H, N}, q.options().dtype(acc_type(q)));  // (H, N)
  for (size_t d = 0; d + 1 < doc_starts.size(); ++d) {
    int64_t s = doc_starts[d], L = doc_starts[d + 1] - s;
    if (L == 0) continue;
    at::Tensor qd = q.narrow(0, s, L).transpose(0, 1);                  // (H, L, D)
    at::Tensor kd = repeat_heads(k.narrow(0, s, L), H);                 // (H, L, D)
    at::Tensor vd = repeat_heads(v.narrow(0, s, L), H);                 // (H, L, D)
    at::Tensor scores = at::matmul(qd, kd.transpose(1, 2)).mul_(scale).to(acc_type(q));  // (H, L, L)
    scores.add_(causal_mask(L, window, scores.options()));
    at::Tensor p = at::softmax(scores, -1).to(q.scalar_type());         // (H, L, L)
    out.narrow(0, s, L).copy_(at::matmul(p, vd).transpose(0, 1));
    lse.narrow(1, s, L).copy_(at::logsumexp(scores, -1));
  }
  LLMFT_ASSERT(doc_starts.back() == N);
  if (cache) {
    cache->q = q;
    cache->k = k;
    cache->v = v;
    cache->out = out;
    cache->lse = lse;
  }
  return out;
}

void attention_backward(const at::Tensor& dout, const AttentionCache& c, const std::vector<int64_t>& doc_starts,
                        int64_t window, at::Tensor* dq, at::Tensor* dk, at::Tensor* dv) {
  const int64_t H = c.q.size(1), K = c.k.size(1), D = c.q.size(2);
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  *dq = at::zeros_like(c.q);
  *dk = at::zeros_like(c.k);
  *dv = at::zeros_like(c.v);
  for (size_t d = 0; d + 1 < doc_starts.size(); ++d) {
    int64_t s = doc_starts[d], L = doc_starts[d + 1] - s;
    if (L == 0) continue;
    at::Tensor qd = c.q.narrow(0, s, L).transpose(0, 1);                // (H, L, D)
    at::Tensor kd = repeat_heads(c.k.narrow(0, s, L), H);               // (H, L, D)
    at::Tensor vd = repeat_heads(c.v.narrow(0, s, L), H);               // (H, L, D)
    at::Tensor go = dout.narrow(0, s, L).transpose(0, 1);               // (H, L, D)
    // Recompute the probabilities from the saved log-sum-exp.
    at::Tensor scores = at::matmul(qd, kd.transpose(1, 2)).mul_(scale).to(acc_type(c.q));  // (H, L, L)
    scores.add_(causal_mask(L, window, scores.options()));
    at::Tensor p = at::exp(scores - c.lse.narrow(1, s, L).unsqueeze(-1));              // (H, L, L)
    at::Tensor pc = p.to(c.q.scalar_type());
    at::Tensor gv = at::matmul(pc.transpose(1, 2), go);                 // (H, L, D)
    at::Tensor gp = at::matmul(go, vd.transpose(1, 2)).to(acc_type(c.q));  // (H, L, L)
    at::Tensor gs = p * (gp - (gp * p).sum(-1, true));                  // (H, L, L) d/dscores
    at::Tensor gsc = (gs * scale).to(c.q.scalar_type());
    dq->narrow(0, s, L).copy_(at::matmul(gsc, kd).transpose(0, 1));
    dk->narrow(0, s, L).copy_(reduce_heads(at::matmul(gsc.transpose(1, 2), qd), K));
    dv->narrow(0, s, L).copy_(reduce_heads(gv, K));
  }
}

// ---- Cross-entropy ----

double cross_entropy_forward_backward(const at::Tensor& h, const at::Tensor& targets, const at::Tensor& w,
                                      at::Tensor* dh, at::Tensor* dw, int64_t chunk_rows, at::Tensor* workspace) {
  const int64_t M = h.size(0);
  const at::ScalarType acc = h.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  double total = 0;
  if (dh) *dh = at::empty_like(h);
  if (M == 0) return 0;
  // One logits buffer for every chunk (and, with a workspace, every call): mapping (chunk, V) afresh each time cost
  // more in page faults than the matrix products themselves on a 128k vocabulary.
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
    at::Tensor lse = at::logsumexp(logits, -1);                          // (n)
    at::Tensor picked = logits.gather(1, tc.unsqueeze(1)).squeeze(1);   // (n)
    total += (lse - picked).sum().to(at::kDouble).item<double>();
    if (!dh) continue;
    at::Tensor g = logits.sub_(lse.unsqueeze(1)).exp_();                 // softmax (n, V), in place
    g.scatter_add_(1, tc.unsqueeze(1), at::full({n, 1}, -1.0, g.options()));
    at::Tensor gc = g.scalar_type() == h.scalar_type() ? g : g.to(h.scalar_type());
    at::Tensor dh_rows = dh->narrow(0, i, n);
    at::mm_out(dh_rows, gc, w);
    if (dw && dw->defined()) add_mm(*dw, gc.t(), hc);
  }
  return total;
}

double cross_entropy_forward(const at::Tensor& h, const at::Tensor& targets, const at::Tensor& w, int64_t chunk_rows,
                             at::Tensor* workspace, int64_t* correct) {
  if (!correct) return cross_entropy_forward_backward(h, targets, w, nullptr, nullptr, chunk_rows, workspace);
  double total = 0;
  *correct = 0;
  for (int64_t i = 0; i < h.size(0); i += chunk_rows) {
    int64_t n = std::min(chunk_rows, h.size(0) - i);
    at::Tensor hc = h.narrow(0, i, n), tc = targets.narrow(0, i, n);
    total += cross_entropy_forward_backward(hc, tc, w, nullptr, nullptr, chunk_rows, workspace);
    at::Tensor logits = at::mm(hc, w.t());
    *correct += (logits.argmax(-1) == tc).sum().item<int64_t>();
  }
  return total;
}

}  // namespace llmft::model
