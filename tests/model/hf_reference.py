#!/usr/bin/env python3
"""Hugging Face as the judge of llmft's decoder numerics.

The model is transformers' own class for the architecture in config.json (LlamaForCausalLM, MistralForCausalLM,
Qwen2ForCausalLM, Qwen3ForCausalLM; eager attention), the LoRA is PEFT's (get_peft_model + LoraConfig), gradients
come from autograd, the optimizer is torch.optim.AdamW with transformers' get_cosine_schedule_with_warmup. Nothing
here re-implements their math: this script only loads llmft's tensors into their objects and reads results out.

Packed documents: each document runs as a sequence of its own (positions from 0, attention within it), which is
what llmft's packed rows must equal.

Usage: hf_reference.py CASE_DIR
  reads  CASE_DIR/case.json, CASE_DIR/config.json, CASE_DIR/model.safetensors, CASE_DIR/adapter.safetensors (LoRA)
  writes CASE_DIR/reference.safetensors: "logits", "loss" (sum over targets) and "grad.<name>" per trained tensor
When case.json has "steps" (a list of optimizer steps, each a list of micro-batches of document indices), it instead
trains: AdamW (weight decay on everything but norms and biases, as transformers' Trainer groups them),
clip_grad_norm_, warmup + cosine, the token-weighted mean loss of each step; it writes "losses" and "final.<name>".
"""
import json
import os
import sys

import torch
import transformers
from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
from safetensors.torch import load_file, save_file


def load_model(case_dir, case):
    cfg = transformers.AutoConfig.from_pretrained(case_dir)
    weights = load_file(os.path.join(case_dir, "model.safetensors"))
    dtype = weights["model.embed_tokens.weight"].dtype
    cls = getattr(transformers, cfg.architectures[0])
    model = cls._from_config(cfg, attn_implementation="eager", dtype=dtype)
    missing, unexpected = model.load_state_dict(weights, strict=False)
    missing = [k for k in missing if not (k == "lm_head.weight" and cfg.tie_word_embeddings)]
    if missing or unexpected:
        raise SystemExit(f"weights do not fit {cls.__name__}: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    model.eval()  # no dropout anywhere; gradients still flow
    if case["mode"] != "lora":
        trained = {n: p for n, p in model.named_parameters()}
        for p in trained.values():
            p.requires_grad_(True)
        return model, trained
    lora = case["lora"]
    targets = lora.get("targets", ["all-linear"])
    config = LoraConfig(r=lora["r"], lora_alpha=lora["alpha"], use_rslora=lora.get("use_rslora", False),
                        target_modules="all-linear" if targets == ["all-linear"] else targets, lora_dropout=0.0,
                        bias="none", task_type="CAUSAL_LM")
    model = get_peft_model(model, config)
    adapter = load_file(os.path.join(case_dir, "adapter.safetensors"))
    result = set_peft_model_state_dict(model, {"base_model.model." + k: v for k, v in adapter.items()})
    if result.unexpected_keys:
        raise SystemExit(f"PEFT did not take adapter tensors: {result.unexpected_keys}")
    trained = {}
    for n, p in model.named_parameters():
        if p.requires_grad:
            trained[n.removeprefix("base_model.model.").replace(".default.", ".")] = p
    if sorted(trained) != sorted(adapter):
        raise SystemExit(f"PEFT's LoRA tensors {sorted(trained)} differ from llmft's {sorted(adapter)}")
    return model, trained


def doc_tensors(case, di):
    doc, mask = case["docs"][di], case["trained"][di]
    targets = [doc[t + 1] if t + 1 < len(doc) and mask[t + 1] else -100 for t in range(len(doc))]
    return torch.tensor([doc]), torch.tensor(targets)


def run_docs(model, case, doc_indices):
    """Logits (float32, or float64 for a float64 model) of the documents one after another, and the summed cross-entropy over their targets."""
    logits, loss = [], 0.0
    for di in doc_indices:
        ids, targets = doc_tensors(case, di)
        out = model(input_ids=ids, use_cache=False).logits[0]
        out = out if out.dtype == torch.float64 else out.float()
        sel = targets >= 0
        if sel.any():
            loss = loss + torch.nn.functional.cross_entropy(out[sel], targets[sel], reduction="sum")
        logits.append(out)
    return torch.cat(logits), loss


def train(case_dir, case, model, trained):
    opt = case["optim"]
    decay = [t for n, t in trained.items() if not (n.endswith(".bias") or "norm" in n)]
    no_decay = [t for n, t in trained.items() if n.endswith(".bias") or "norm" in n]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": opt["weight_decay"]},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=opt["lr"], betas=(opt["beta1"], opt["beta2"]), eps=opt["eps"])
    scheduler = transformers.get_cosine_schedule_with_warmup(optimizer, opt["warmup_steps"], len(case["steps"]))
    losses = []
    for micro_batches in case["steps"]:
        optimizer.zero_grad()
        n_targets = sum(int((doc_tensors(case, di)[1] >= 0).sum()) for mb in micro_batches for di in mb)
        total = 0.0
        for mb in micro_batches:
            _, loss = run_docs(model, case, mb)
            loss = loss / n_targets
            loss.backward()
            total += float(loss)
        torch.nn.utils.clip_grad_norm_(list(trained.values()), opt["max_grad_norm"])
        optimizer.step()
        scheduler.step()
        losses.append(total)
    out = {"losses": torch.tensor(losses, dtype=torch.float64)}
    for name, t in trained.items():
        out["final." + name] = t.detach().contiguous()
    save_file(out, os.path.join(case_dir, "reference.safetensors"))


def main(case_dir):
    torch.manual_seed(0)
    torch.set_num_threads(1)
    with open(os.path.join(case_dir, "case.json")) as f:
        case = json.load(f)
    model, trained = load_model(case_dir, case)
    if "steps" in case:
        return train(case_dir, case, model, trained)
    logits, loss = run_docs(model, case, range(len(case["docs"])))
    loss.backward()
    out = {"logits": logits.detach(), "loss": loss.detach().reshape(1)}
    for name, t in trained.items():
        out["grad." + name] = (t.grad if t.grad is not None else torch.zeros_like(t)).contiguous()
    save_file(out, os.path.join(case_dir, "reference.safetensors"))


if __name__ == "__main__":
    main(sys.argv[1])
