#!/usr/bin/env python3
"""torch.optim.AdamW replaying llmft's optimizer steps on llmft's own gradients (tests/model/test_training_step.cpp).

Usage: optim_reference.py CASE_DIR
  reads  CASE_DIR/case.json ({"steps": N, "optim": {...}}) and CASE_DIR/steps.safetensors: "param0.<name>" (initial
         trained tensors), "grad.<step>.<name>" (the summed-loss gradient of each step), "targets" (the global number
         of target tokens of each step)
  writes CASE_DIR/reference.safetensors: "final.<name>"
Each step: gradients divided by the step's targets (token-weighted mean), clip_grad_norm_, AdamW with weight decay
on everything but norms and biases (transformers' Trainer grouping), transformers' get_cosine_schedule_with_warmup.
"""
import json
import os
import sys

import torch
import transformers
from safetensors.torch import load_file, save_file


def main(case_dir):
    with open(os.path.join(case_dir, "case.json")) as f:
        case = json.load(f)
    opt = case["optim"]
    data = load_file(os.path.join(case_dir, "steps.safetensors"))
    params = {k[len("param0."):]: torch.nn.Parameter(v.clone()) for k, v in data.items() if k.startswith("param0.")}
    no_decay = [p for n, p in params.items() if n.endswith(".bias") or "norm" in n]
    decay = [p for n, p in params.items() if not (n.endswith(".bias") or "norm" in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": opt["weight_decay"]},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=opt["lr"], betas=(opt["beta1"], opt["beta2"]), eps=opt["eps"])
    scheduler = transformers.get_cosine_schedule_with_warmup(optimizer, opt["warmup_steps"], case["steps"])
    targets = data["targets"]
    for s in range(case["steps"]):
        for n, p in params.items():
            p.grad = data[f"grad.{s}.{n}"] / targets[s]
        torch.nn.utils.clip_grad_norm_(list(params.values()), opt["max_grad_norm"])
        optimizer.step()
        scheduler.step()
    save_file({"final." + n: p.detach().contiguous() for n, p in params.items()},
              os.path.join(case_dir, "reference.safetensors"))


if __name__ == "__main__":
    main(sys.argv[1])
