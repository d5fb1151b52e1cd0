#!/usr/bin/env python3
"""Attention of one document, forward and backward, two ways on the same ATen CPU kernels llmft calls: written out
(softmax(QK^T / sqrt(D) + causal mask) V with the (H, L, L) probabilities in memory, the backward from them, as
llmft's attention did) against ATen's fused flash attention (_scaled_dot_product_flash_attention_for_cpu and its
backward, what llmft's attention_forward / attention_backward call now). GQA by repeating key/value heads in both.
  bench/attention.py [THREADS]     (the project's Python: .venv/bin/python bench/attention.py 2)"""
import math
import sys
import time

import torch

torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
H, K, L, D = 8, 4, 512, 64
scale = D ** -0.5


def written_out(q, k, v, go):
    kd, vd = k.repeat_interleave(H // K, 0), v.repeat_interleave(H // K, 0)
    s = ((q @ kd.transpose(1, 2)) * scale).float() + torch.full((L, L), -math.inf).triu(1)
    p = torch.softmax(s, -1)
    lse = torch.logsumexp(s, -1)
    out = p.to(q.dtype) @ vd
    p = torch.exp(s - lse[..., None])  # the backward recomputes the probabilities from the log-sum-exp
    gv = p.to(q.dtype).transpose(1, 2) @ go
    gp = (go @ vd.transpose(1, 2)).float()
    gs = ((p * (gp - (gp * p).sum(-1, keepdim=True))) * scale).to(q.dtype)
    return out, gs @ kd, gs.transpose(1, 2) @ q, gv


def flash(q, k, v, go):
    kd, vd = k.repeat_interleave(H // K, 0)[None], v.repeat_interleave(H // K, 0)[None]
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q[None], kd, vd, 0.0, True)
    return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(go[None], q[None], kd, vd, out, lse,
                                                                               0.0, True)


print(f"| dtype | written out, ms | flash, ms | speed-up |  (H {H}, KV heads {K}, L {L}, D {D}, forward + backward)")
print("|---|---:|---:|---:|")
for dt in (torch.float32, torch.bfloat16):
    q, go = torch.randn(H, L, D, dtype=dt), torch.randn(H, L, D, dtype=dt)
    k, v = torch.randn(K, L, D, dtype=dt), torch.randn(K, L, D, dtype=dt)
    ms = {}
    for f in (written_out, flash):
        for _ in range(3):
            f(q, k, v, go)
        t0 = time.perf_counter()
        for _ in range(20):
            f(q, k, v, go)
        ms[f.__name__] = (time.perf_counter() - t0) / 20 * 1000
    print(f"| {str(dt).replace('torch.', '')} | {ms['written_out']:.1f} | {ms['flash']:.1f} | "
          f"{ms['written_out'] / ms['flash']:.2f}x |")
