#!/usr/bin/env python3
"""The Hugging Face side of bench/gpu/run.sh, on the GPU machine's own PyTorch, transformers and PEFT.

  bench_hf.py train CONFIG_JSON lora|full SEQ_LEN ROWS STEPS [ckpt] [RATE_TFLOPS]
      What a user runs instead of llmft: transformers' model of CONFIG_JSON's shape (random weights, SDPA attention),
      gradient checkpointing when `ckpt`; LoRA: bf16 weights and PEFT's LoRA r=16 alpha 32 on all linear layers;
      full: fp32 weights under bf16 autocast (HF Trainer's bf16=True); torch's fused AdamW, clipping at 1.0. The
      rows are packed as bench_gpu packs them (documents of 1/4, 1/8, 1/2, 1/8 of a row, positions restarting in each,
      no target across a boundary) and given with their block-diagonal causal mask (4D, boolean): transformers 5.24
      under SDPA does not derive one from the positions alone (its packed loss then differs from the documents'
      separate losses; with the mask it equals them). Two warm-up steps, then STEPS timed; one JSON line, with the
      same FLOP count as bench_gpu's (bench/README.md).
  bench_hf.py peft MODEL_DIR OUT_DIR
      Loads MODEL_DIR with the adapter bench_gpu wrote (OUT_DIR/adapter) through PEFT, in bf16 on the GPU, and compares
      its logits of OUT_DIR/logits.safetensors' document with llmft's.
"""
import json
import os
import sys
import time

import torch
from safetensors.torch import load_file

DEVICE = os.environ.get("BENCH_DEVICE", "cuda")  # cpu: a check of this script where no GPU is


def sync():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def packed(seq, rows, vocab, seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (rows, seq), generator=g)
    pos = torch.empty(rows, seq, dtype=torch.long)
    labels = ids.clone()
    a, b, c = seq // 4, seq // 8, seq // 2
    for r in range(rows):
        start = 0
        for n in (a, b, c, seq - a - b - c):
            pos[r, start:start + n] = torch.arange(n)
            labels[r, start] = -100  # no target across a document boundary
            start += n
    doc = torch.cumsum((pos == 0).long(), 1)  # (rows, seq) document number of each token
    mask = (doc[:, :, None] == doc[:, None, :]) & torch.ones(seq, seq, dtype=torch.bool).tril()
    return ids, pos, labels, mask[:, None]  # (rows, 1, seq, seq): True where a query sees a key


def flops_per_token(cfg, seq, lora):
    C, L, H, K = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    D = cfg.get("head_dim") or C // H
    n = L * (C * H * D + 2 * C * K * D + H * D * C + 3 * C * cfg["intermediate_size"]) + cfg["vocab_size"] * C
    a, b, c = seq // 4, seq // 8, seq // 2
    keys = sum(x * (x + 1) / 2 for x in (a, b, c, seq - a - b - c)) / seq
    return (4 if lora else 6) * n + 12 * L * H * D * keys


def train(argv):
    from transformers import AutoConfig, AutoModelForCausalLM

    path, mode, seq, rows, steps = argv[0], argv[1], int(argv[2]), int(argv[3]), int(argv[4])
    ckpt = len(argv) > 5 and argv[5] == "ckpt"
    rate = float(argv[6]) * 1e12 if len(argv) > 6 else 0.0
    lora = mode == "lora"
    raw = json.load(open(path))
    cfg = AutoConfig.for_model(raw["model_type"], **{k: v for k, v in raw.items() if k != "model_type"})
    torch.manual_seed(0)
    with torch.device(DEVICE):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16 if lora else torch.float32,
                                                 attn_implementation="sdpa")
    if ckpt:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if lora:
        from peft import LoraConfig, get_peft_model

        model.enable_input_require_grads()
        model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear"))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, fused=True)
    seconds, loss = 0.0, float("nan")
    for s in range(steps + 2):
        ids, pos, labels, mask = (t.to(DEVICE) for t in packed(seq, rows, raw["vocab_size"], s))
        sync()
        t0 = time.perf_counter()
        with torch.autocast(DEVICE, dtype=torch.bfloat16, enabled=not lora):
            out = model(input_ids=ids, position_ids=pos, labels=labels, attention_mask=mask)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss = out.loss.item()
        sync()
        if s >= 2:
            seconds += time.perf_counter() - t0
    tokens = steps * seq * rows
    per_token = flops_per_token(raw, seq, lora)
    res = {"engine": "transformers+peft" if lora else "transformers", "mode": mode, "seq_len": seq, "rows": rows,
           "steps": steps, "activation_checkpointing": ckpt, "tokens_per_s": tokens / seconds,
           "step_s": seconds / steps, "last_loss": loss, "peak_allocated_bytes": torch.cuda.max_memory_allocated() if DEVICE == "cuda" else 0,
           "flops_per_token": per_token, "versions": {"torch": torch.__version__}}
    import transformers
    res["versions"]["transformers"] = transformers.__version__
    if lora:
        import peft
        res["versions"]["peft"] = peft.__version__
    if rate > 0:
        res["mfu"] = tokens / seconds * per_token / rate
    print(json.dumps(res))


def peft_check(argv):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model_dir, out = argv[0], argv[1]
    ref = load_file(f"{out}/logits.safetensors")
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16).to(DEVICE)
    model = PeftModel.from_pretrained(base, f"{out}/adapter").eval()
    ids = ref["ids"].to(DEVICE)[None]
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].float().cpu()
        with model.disable_adapter():
            plain = model(input_ids=ids).logits[0].float().cpu()
    scale = ref["logits"].abs().max().item()
    err = (logits - ref["logits"]).abs().max().item() / scale
    moved = (logits - plain).abs().max().item() / scale
    print(json.dumps({"check": "peft_loads_llmft_gpu_adapter", "relative_error": err, "adapter_moves_logits": moved,
                      "tolerance": 3e-2, "ok": err < 3e-2 and moved > 3 * err}))


if __name__ == "__main__":
    {"train": train, "peft": peft_check}[sys.argv[1]](sys.argv[2:])
