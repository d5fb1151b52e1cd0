#!/usr/bin/env python3
"""The Python side of bench/train.sh: what a user would run instead of llmft, on the same model (a Hugging Face
directory), LoRA setup (r=16, alpha 32, every linear layer of the decoder) or full fine-tuning, batch (4 rows x 512
tokens) and step (forward, token-mean cross-entropy, backward, clip_grad_norm_ 1.0, torch.optim.AdamW).

  train_torch.py IMPL MODEL_DIR lora|full STEPS THREADS [float32|bfloat16]
    IMPL  hf        transformers' AutoModelForCausalLM (SDPA attention) + PEFT get_peft_model, a plain loop
          eager     plain PyTorch 2.x: the Llama block written out (SDPA with GQA, RoPE, RMSNorm, SwiGLU), LoRA as
                    PEFT computes it, weights loaded from MODEL_DIR
          compile   the same as eager under torch.compile (inductor, default mode)
bfloat16: the base weights and activations in bf16, LoRA matrices in fp32 (PEFT's default for a bf16 base), norms and
the loss in fp32. Prints one JSON line: tokens/s, seconds per step, peak resident memory (MB), trainable parameters.
"""
import json
import resource
import sys
import time

import torch
import torch.nn.functional as F

impl, model_dir, mode = sys.argv[1], sys.argv[2], sys.argv[3]
steps, threads = int(sys.argv[4]), int(sys.argv[5])
DTYPE = torch.bfloat16 if len(sys.argv) > 6 and sys.argv[6] == "bfloat16" else torch.float32
torch.set_num_threads(threads)
torch.manual_seed(0)
ROWS, T, R, ALPHA = 4, 512, 16, 32
full = mode == "full"
with open(f"{model_dir}/config.json") as f:
    cfg = json.load(f)
V, C, FF, L = cfg["vocab_size"], cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
H, K = cfg["num_attention_heads"], cfg["num_key_value_heads"]
D = cfg.get("head_dim") or C // H
THETA, EPS = cfg.get("rope_theta", 10000.0), cfg["rms_norm_eps"]


def hf_model():
    import transformers
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=DTYPE,
                                                              attn_implementation="sdpa")
    if full:
        return model
    from peft import LoraConfig, get_peft_model
    if cfg.get("model_type") == "qwen3_moe":
        # transformers 5 keeps the experts fused: PEFT adapts them as parameters (gate_up_proj with one rank-r LoRA
        # per expert, down_proj likewise), beside the attention projections; the router stays frozen, as in llmft.
        return get_peft_model(model, LoraConfig(r=R, lora_alpha=ALPHA, lora_dropout=0.0,
                                                target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                                                target_parameters=["mlp.experts.gate_up_proj", "mlp.experts.down_proj"],
                                                task_type="CAUSAL_LM"))
    return get_peft_model(model, LoraConfig(r=R, lora_alpha=ALPHA, lora_dropout=0.0, target_modules="all-linear",
                                            task_type="CAUSAL_LM"))


class LoraLinear(torch.nn.Module):
    def __init__(self, weight):
        super().__init__()
        self.weight = torch.nn.Parameter(weight, requires_grad=full)
        if not full:
            self.a = torch.nn.Parameter(torch.empty(R, weight.shape[1]))
            torch.nn.init.kaiming_uniform_(self.a, a=5 ** 0.5)
            self.b = torch.nn.Parameter(torch.zeros(weight.shape[0], R))

    def forward(self, x):
        y = F.linear(x, self.weight)
        return y if full else y + (F.linear(F.linear(x.float(), self.a), self.b) * (ALPHA / R)).to(y.dtype)


class RMSNorm(torch.nn.Module):
    def __init__(self, weight):
        super().__init__()
        self.weight = torch.nn.Parameter(weight, requires_grad=full)

    def forward(self, x):
        xf = x.float()
        return self.weight * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + EPS)).to(x.dtype)


def rotate_half(x):
    return torch.cat((-x[..., D // 2:], x[..., :D // 2]), dim=-1)


class Block(torch.nn.Module):
    def __init__(self, w, p):
        super().__init__()
        self.n1, self.n2 = RMSNorm(w[p + "input_layernorm.weight"]), RMSNorm(w[p + "post_attention_layernorm.weight"])
        a, m = p + "self_attn.", p + "mlp."
        self.q, self.k = LoraLinear(w[a + "q_proj.weight"]), LoraLinear(w[a + "k_proj.weight"])
        self.v, self.o = LoraLinear(w[a + "v_proj.weight"]), LoraLinear(w[a + "o_proj.weight"])
        self.g, self.u = LoraLinear(w[m + "gate_proj.weight"]), LoraLinear(w[m + "up_proj.weight"])
        self.d = LoraLinear(w[m + "down_proj.weight"])

    def forward(self, h, cos, sin):
        b, t, _ = h.shape
        x = self.n1(h)
        q = self.q(x).view(b, t, H, D).transpose(1, 2)
        k = self.k(x).view(b, t, K, D).transpose(1, 2)
        v = self.v(x).view(b, t, K, D).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        h = h + self.o(a.transpose(1, 2).reshape(b, t, H * D))
        x = self.n2(h)
        return h + self.d(F.silu(self.g(x)) * self.u(x))


class Eager(torch.nn.Module):
    def __init__(self):
        super().__init__()
        from safetensors.torch import load_file
        w = {k: v.to(DTYPE) for k, v in load_file(f"{model_dir}/model.safetensors").items()}
        self.emb = torch.nn.Parameter(w["model.embed_tokens.weight"], requires_grad=full)
        self.blocks = torch.nn.ModuleList([Block(w, f"model.layers.{i}.") for i in range(L)])
        self.norm = RMSNorm(w["model.norm.weight"])
        inv = 1.0 / (THETA ** (torch.arange(0, D, 2).float() / D))
        f = torch.arange(T).float()[:, None] * inv[None]
        emb = torch.cat((f, f), -1)
        self.register_buffer("cos", emb.cos().to(DTYPE), persistent=False)
        self.register_buffer("sin", emb.sin().to(DTYPE), persistent=False)

    def forward(self, input_ids, labels):
        h = F.embedding(input_ids, self.emb)
        for blk in self.blocks:
            h = blk(h, self.cos, self.sin)
        logits = F.linear(self.norm(h), self.emb)
        return F.cross_entropy(logits[:, :-1].reshape(-1, V).float(), labels[:, 1:].reshape(-1))


if impl == "hf":
    model = hf_model()
    loss_of = lambda ids: model(input_ids=ids, labels=ids).loss
else:
    model = Eager()
    fwd = torch.compile(model) if impl == "compile" else model
    loss_of = lambda ids: fwd(ids, ids)
params = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.AdamW(params, lr=1e-4)
ids = torch.randint(0, V, (ROWS, T))


def step():
    opt.zero_grad(set_to_none=True)
    loss_of(ids).backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()


t_first = time.time()
step()  # warm-up (torch.compile compiles here)
warmup = time.time() - t_first
t0 = time.time()
for _ in range(steps):
    step()
secs = (time.time() - t0) / steps
print(json.dumps({"impl": impl, "mode": mode, "dtype": str(DTYPE).replace("torch.", ""), "threads": threads, "tokens_per_s": ROWS * T / secs, "step_s": secs,
                  "warmup_s": warmup, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "trainable": sum(p.numel() for p in params)}))
