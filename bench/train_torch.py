#!/usr/bin/env python3
"""PyTorch eager side of bench/train.sh: the same Llama-architecture model (~40M parameters), LoRA setup (r=16 on
every linear layer, as PEFT computes it) or full fine-tuning, batch (4 rows x 512 tokens) and AdamW, trained with
autograd. Prints one JSON line with tokens/s. Run with Debian's python3-torch."""
import json
import math
import sys
import time

import torch
import torch.nn.functional as F

mode = sys.argv[1] if len(sys.argv) > 1 else "lora"
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 6
threads = int(sys.argv[3]) if len(sys.argv) > 3 else 1
torch.set_num_threads(threads)
torch.manual_seed(0)
V, C, FF, L, H, K, D, R = 32000, 512, 1408, 8, 8, 4, 64, 16
ROWS, T = 4, 512
full = mode == "full"


class LoraLinear(torch.nn.Module):
    def __init__(self, i, o):
        super().__init__()
        self.base = torch.nn.Linear(i, o, bias=False)
        self.base.weight.requires_grad_(full)
        if not full:
            self.a = torch.nn.Linear(i, R, bias=False)
            self.b = torch.nn.Linear(R, o, bias=False)
            torch.nn.init.zeros_(self.b.weight)

    def forward(self, x):
        y = self.base(x)
        return y if full else y + self.b(self.a(x)) * 2.0


class RMSNorm(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(C), requires_grad=full)

    def forward(self, x):
        xf = x.float()
        return self.weight * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-5)).to(x.dtype)


def rotate_half(x):
    return torch.cat((-x[..., D // 2:], x[..., :D // 2]), dim=-1)


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.n1, self.n2 = RMSNorm(), RMSNorm()
        self.q, self.k, self.v, self.o = LoraLinear(C, H * D), LoraLinear(C, K * D), LoraLinear(C, K * D), LoraLinear(H * D, C)
        self.g, self.u, self.d = LoraLinear(C, FF), LoraLinear(C, FF), LoraLinear(FF, C)

    def forward(self, h, cos, sin, mask):
        b, t, _ = h.shape
        x = self.n1(h)
        q = self.q(x).view(b, t, H, D).transpose(1, 2)
        k = self.k(x).view(b, t, K, D).transpose(1, 2)
        v = self.v(x).view(b, t, K, D).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k = k[:, :, None].expand(b, K, H // K, t, D).reshape(b, H, t, D)
        v = v[:, :, None].expand(b, K, H // K, t, D).reshape(b, H, t, D)
        p = torch.softmax(torch.matmul(q, k.transpose(2, 3)) * D ** -0.5 + mask, dim=-1, dtype=torch.float32)
        h = h + self.o(torch.matmul(p, v).transpose(1, 2).reshape(b, t, H * D))
        x = self.n2(h)
        return h + self.d(F.silu(self.g(x)) * self.u(x))


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(V, C)
        self.emb.weight.requires_grad_(full)
        self.blocks = torch.nn.ModuleList([Block() for _ in range(L)])
        self.norm = RMSNorm()

    def forward(self, ids, labels):
        h = self.emb(ids)
        t = ids.shape[1]
        inv = 1.0 / (10000.0 ** (torch.arange(0, D, 2).float() / D))
        f = torch.arange(t).float()[:, None] * inv[None]
        emb = torch.cat((f, f), -1)
        cos, sin = emb.cos(), emb.sin()
        mask = torch.full((t, t), float("-inf")).triu(1)
        for blk in self.blocks:
            h = blk(h, cos, sin, mask)
        logits = (self.norm(h) @ self.emb.weight.T).float()
        return F.cross_entropy(logits.view(-1, V), labels.view(-1))


model = Model()
params = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.AdamW(params, lr=1e-4)
ids = torch.randint(0, V, (ROWS, T))
labels = torch.randint(0, V, (ROWS, T))


def step():
    opt.zero_grad(set_to_none=True)
    model(ids, labels).backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()


step()
t0 = time.time()
for _ in range(steps):
    step()
secs = (time.time() - t0) / steps
print(json.dumps({"impl": "pytorch-eager", "mode": mode, "threads": threads, "tokens_per_s": ROWS * T / secs,
                  "step_s": secs, "trainable": sum(p.numel() for p in params)}))
