#!/usr/bin/env python3
"""PyTorch reference for llmft's decoder numerics.

The forward pass follows transformers' modeling code for LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM
and Qwen3ForCausalLM (eager attention, RMSNorm in fp32, rotate_half RoPE with llama3 / linear scaling, repeat_kv GQA,
fp32 softmax) and PEFT's LoRA Linear (lora_B(lora_A(dropout(x))) * scaling). Gradients come from torch.autograd.
Packed documents are one sequence with a block-diagonal causal mask and positions restarting per document.

Usage: reference.py CASE_DIR
  reads  CASE_DIR/case.json, CASE_DIR/config.json, CASE_DIR/model.safetensors, CASE_DIR/adapter.safetensors (LoRA)
  writes CASE_DIR/reference.safetensors: "logits", "loss" (sum over targets) and "grad.<name>" per trained tensor
When case.json has "steps" (a list of optimizer steps, each a list of micro-batches of document indices), it instead
trains with torch.optim.AdamW (weight decay on everything but norms and biases, as transformers' Trainer groups
them), clip_grad_norm_, linear warmup + cosine decay (transformers' schedule) and the token-weighted mean loss of
each step, and writes "losses" and "final.<name>" for every trained tensor.
"""
import json
import math
import os
import struct
import sys

import torch

DTYPES = {"F32": torch.float32, "F64": torch.float64, "BF16": torch.bfloat16, "F16": torch.float16, "I64": torch.int64}
NAMES = {v: k for k, v in DTYPES.items()}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        buf = bytearray(data[8 + n + b:8 + n + e])
        t = torch.frombuffer(buf, dtype=DTYPES[info["dtype"]]) if e > b else torch.empty(0, dtype=DTYPES[info["dtype"]])
        out[name] = t.reshape(info["shape"]).clone()
    return out


def write_safetensors(path, tensors):
    header, offset, blobs = {}, 0, []
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        raw = t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.view(torch.int16).numpy().tobytes()
        header[name] = {"dtype": NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def inv_freq(cfg):
    d = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    inv = 1.0 / (cfg.get("rope_theta", 10000.0) ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))
    rs = cfg.get("rope_scaling")
    if rs and rs.get("rope_type", rs.get("type")) == "linear":
        inv = inv / rs["factor"]
    elif rs and rs.get("rope_type", rs.get("type")) == "llama3":  # transformers' _compute_llama3_parameters
        factor, low, high = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
        old = rs["original_max_position_embeddings"]
        low_wl, high_wl = old / low, old / high
        wavelen = 2 * math.pi / inv
        inv_l = torch.where(wavelen > low_wl, inv / factor, inv)
        smooth = (old / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * inv_l / factor + smooth * inv_l
        medium = ~(wavelen < high_wl) * ~(wavelen > low_wl)
        inv = torch.where(medium, smoothed, inv_l)
    return inv


class Reference:
    def __init__(self, cfg, weights, adapter, case):
        self.cfg, self.w, self.a, self.case = cfg, weights, adapter, case
        self.arch = cfg["architectures"][0]
        self.d = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
        lora = case.get("lora") or {}
        r = lora.get("r", 1)
        self.scaling = lora.get("alpha", 1) / (math.sqrt(r) if lora.get("use_rslora") else r)

    def rmsnorm(self, weight, x):
        dt = x.dtype
        xf = x.to(torch.float64 if dt == torch.float64 else torch.float32)
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.cfg["rms_norm_eps"])
        return weight * xf.to(dt)

    def linear(self, name, x):
        y = x @ self.w[name + ".weight"].T
        if name + ".bias" in self.w:
            y = y + self.w[name + ".bias"]
        if name + ".lora_A.weight" in self.a:  # PEFT: result + lora_B(lora_A(dropout(x))) * scaling
            y = y + (x @ self.a[name + ".lora_A.weight"].T) @ self.a[name + ".lora_B.weight"].T * self.scaling
        return y

    def forward(self, ids, positions, docs):
        cfg, w = self.cfg, self.w
        n, hq, hk, d = ids.shape[0], cfg["num_attention_heads"], cfg["num_key_value_heads"], self.d
        dtype = w["model.embed_tokens.weight"].dtype
        h = w["model.embed_tokens.weight"][ids]
        freqs = positions.to(torch.float64 if dtype == torch.float64 else torch.float32)[:, None] * inv_freq(cfg).to(
            torch.float64 if dtype == torch.float64 else torch.float32)[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos().to(dtype)[None], emb.sin().to(dtype)[None]  # (1, N, D)
        i, j = torch.arange(n)[:, None], torch.arange(n)[None, :]
        allowed = (docs[:, None] == docs[None, :]) & (j <= i)
        window = cfg.get("sliding_window") or 0
        if self.arch == "MistralForCausalLM" and window:
            allowed = allowed & (j > i - window)
        mask = torch.zeros(n, n, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)
        for l in range(cfg["num_hidden_layers"]):
            p = f"model.layers.{l}."
            x = self.rmsnorm(w[p + "input_layernorm.weight"], h)
            q = self.linear(p + "self_attn.q_proj", x).view(n, hq, d)
            k = self.linear(p + "self_attn.k_proj", x).view(n, hk, d)
            v = self.linear(p + "self_attn.v_proj", x).view(n, hk, d)
            if self.arch == "Qwen3ForCausalLM":
                q = self.rmsnorm(w[p + "self_attn.q_norm.weight"], q)
                k = self.rmsnorm(w[p + "self_attn.k_norm.weight"], k)
            q, k, v = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)  # (heads, N, D)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            rep = hq // hk
            k = k[:, None].expand(hk, rep, n, d).reshape(hq, n, d)
            v = v[:, None].expand(hk, rep, n, d).reshape(hq, n, d)
            scores = torch.matmul(q, k.transpose(1, 2)) * d ** -0.5 + mask
            probs = torch.softmax(scores, dim=-1, dtype=torch.float64 if dtype == torch.float64 else torch.float32).to(dtype)
            a = torch.matmul(probs, v).transpose(0, 1).reshape(n, hq * d)
            h = h + self.linear(p + "self_attn.o_proj", a)
            x = self.rmsnorm(w[p + "post_attention_layernorm.weight"], h)
            g, u = self.linear(p + "mlp.gate_proj", x), self.linear(p + "mlp.up_proj", x)
            h = h + self.linear(p + "mlp.down_proj", torch.nn.functional.silu(g) * u)
        h = self.rmsnorm(w["model.norm.weight"], h)
        head = w["lm_head.weight"] if "lm_head.weight" in w else w["model.embed_tokens.weight"]
        return (h @ head.T).to(torch.float64 if dtype == torch.float64 else torch.float32)


def batch_tensors(case, doc_indices):
    ids, positions, docs, targets = [], [], [], []
    for di in doc_indices:
        doc, mask = case["docs"][di], case["trained"][di]
        for t, tok in enumerate(doc):
            ids.append(tok)
            positions.append(t)
            docs.append(di)
            targets.append(doc[t + 1] if t + 1 < len(doc) and mask[t + 1] else -100)
    return tuple(map(torch.tensor, (ids, positions, docs, targets)))


def train(case_dir, case, ref, trained):
    opt = case["optim"]
    decay = [t for n, t in trained.items() if not (n.endswith(".bias") or "norm" in n)]
    no_decay = [t for n, t in trained.items() if n.endswith(".bias") or "norm" in n]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": opt["weight_decay"]},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=opt["lr"], betas=(opt["beta1"], opt["beta2"]), eps=opt["eps"])
    warmup, total = opt["warmup_steps"], len(case["steps"])

    def lr_lambda(step):  # transformers' get_cosine_schedule_with_warmup
        if step < warmup:
            return float(step) / float(max(1, warmup))
        progress = float(step - warmup) / float(max(1, total - warmup))
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * 0.5 * 2.0 * progress)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)
    losses = []
    for micro_batches in case["steps"]:
        optimizer.zero_grad()
        n_targets = sum(int((batch_tensors(case, mb)[3] >= 0).sum()) for mb in micro_batches)
        total_loss = 0.0
        for mb in micro_batches:
            ids, positions, docs, targets = batch_tensors(case, mb)
            logits = ref.forward(ids, positions, docs)
            sel = targets >= 0
            loss = torch.nn.functional.cross_entropy(logits[sel], targets[sel], reduction="sum") / n_targets
            loss.backward()
            total_loss += float(loss)
        torch.nn.utils.clip_grad_norm_(list(trained.values()), opt["max_grad_norm"])
        optimizer.step()
        scheduler.step()
        losses.append(total_loss)
    out = {"losses": torch.tensor(losses, dtype=torch.float64)}
    for name, t in trained.items():
        out["final." + name] = t.detach()
    write_safetensors(os.path.join(case_dir, "reference.safetensors"), out)


def main(case_dir):
    torch.manual_seed(0)
    torch.set_num_threads(1)
    case = json.load(open(os.path.join(case_dir, "case.json")))
    cfg = json.load(open(os.path.join(case_dir, "config.json")))
    weights = read_safetensors(os.path.join(case_dir, "model.safetensors"))
    adapter_path = os.path.join(case_dir, "adapter.safetensors")
    adapter = read_safetensors(adapter_path) if os.path.exists(adapter_path) else {}
    trained = adapter if case["mode"] == "lora" else weights
    for t in trained.values():
        t.requires_grad_(True)
    ref = Reference(cfg, weights, adapter, case)
    if "steps" in case:
        return train(case_dir, case, ref, trained)
    ids, positions, docs, targets = [], [], [], []
    for di, (doc, mask) in enumerate(zip(case["docs"], case["trained"])):
        for t, tok in enumerate(doc):
            ids.append(tok)
            positions.append(t)
            docs.append(di)
            targets.append(doc[t + 1] if t + 1 < len(doc) and mask[t + 1] else -100)
    ids, positions, docs, targets = map(torch.tensor, (ids, positions, docs, targets))
    logits = ref.forward(ids, positions, docs)
    sel = targets >= 0
    loss = torch.nn.functional.cross_entropy(logits[sel], targets[sel], reduction="sum")
    loss.backward()
    out = {"logits": logits.detach(), "loss": loss.detach().reshape(1)}
    for name, t in trained.items():
        out["grad." + name] = t.grad if t.grad is not None else torch.zeros_like(t)
    write_safetensors(os.path.join(case_dir, "reference.safetensors"), out)


if __name__ == "__main__":
    main(sys.argv[1])
