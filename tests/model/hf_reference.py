#!/usr/bin/env python3
"""Hugging Face as the judge of llmft's decoder numerics.

The model is transformers' own class for the architecture in config.json (LlamaForCausalLM, MistralForCausalLM,
Qwen2ForCausalLM, Qwen3ForCausalLM; eager attention), the LoRA is PEFT's (get_peft_model + LoraConfig), gradients
come from autograd, the optimizer is torch.optim.AdamW with transformers' get_cosine_schedule_with_warmup. Nothing
here re-implements their math: this script only loads llmft's tensors into their objects and reads results out.

Packed documents: each document runs as a sequence of its own (positions from 0, attention within it), which is
what llmft's packed rows must equal.

Qwen3MoeForCausalLM: transformers 5 keeps the experts fused ((E, 2 Fe, C) gate_up_proj, (E, C, Fe) down_proj) and
converts the per-expert checkpoint keys llmft writes when from_pretrained reads them; the LoRA is the adapter llmft
would export (per-expert lora_A / lora_B, PEFT's v4 layout) loaded by PeftModel.from_pretrained, which converts it to
its fused-experts form (gate and up as one block-diagonal LoRA of rank 2r). Gradients come back to llmft's per-expert
tensors through the positions PEFT's own conversion puts each element at (convert_peft_adapter_state_dict_for_
transformers run on tensors of element ids). The load-balancing loss, when the model uses it, is transformers'
load_balancing_loss_func over every document's router logits together (llmft's packed batch), times
router_aux_loss_coef and the number of targets (llmft's loss is a sum over targets).

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
from peft import LoraConfig, PeftModel, get_peft_model, set_peft_model_state_dict
from peft.utils.transformers_weight_conversion import convert_peft_adapter_state_dict_for_transformers
from safetensors.torch import load_file, save_file


def peft_targets(targets):
    """PEFT's target_modules for llmft's lora targets in a mixture-of-experts model (the experts by their v4 names)."""
    out = []
    for t in targets:
        if t == "all-linear":
            out += ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
        elif t == "experts":
            out += ["gate_proj", "up_proj", "down_proj"]
        else:
            out.append(t)
    return sorted(set(out))


def load_moe_model(case_dir, case, cfg):
    weights = load_file(os.path.join(case_dir, "model.safetensors"))
    dtype = weights["model.embed_tokens.weight"].dtype
    model = getattr(transformers, cfg.architectures[0]).from_pretrained(case_dir, attn_implementation="eager", dtype=dtype)
    model.eval()
    if case["mode"] != "lora":
        params = dict(model.named_parameters())
        for p in params.values():
            p.requires_grad_(True)
        fe = cfg.moe_intermediate_size
        views = {}  # llmft name -> (parameter, index into it)
        for name in weights:
            parts = name.split(".")
            if ".mlp.experts." in name:
                prefix = ".".join(parts[:5])  # model.layers.L.mlp.experts
                e, proj = int(parts[5]), parts[6]
                if proj == "down_proj":
                    views[name] = (params[prefix + ".down_proj"], (e,))
                else:
                    rows = slice(0, fe) if proj == "gate_proj" else slice(fe, 2 * fe)
                    views[name] = (params[prefix + ".gate_up_proj"], (e, rows))
            elif name in params:
                views[name] = (params[name], ())
        for name, (p, index) in views.items():  # the layout read above is the one transformers loaded
            if not torch.equal(p.detach()[index], weights[name]):
                raise SystemExit(f"{name}: not where transformers put it")
        return model, {n: (lambda p=p, i=i: p.grad[i] if p.grad is not None else torch.zeros_like(p[i]))
                       for n, (p, i) in views.items()}
    lora = case["lora"]
    adapter = load_file(os.path.join(case_dir, "adapter.safetensors"))
    peft_dir = os.path.join(case_dir, "peft")
    os.makedirs(peft_dir, exist_ok=True)
    save_file({"base_model.model." + k: v for k, v in adapter.items()},
              os.path.join(peft_dir, "adapter_model.safetensors"))
    with open(os.path.join(peft_dir, "adapter_config.json"), "w") as f:
        json.dump({"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": lora["r"], "lora_alpha": lora["alpha"],
                   "use_rslora": lora.get("use_rslora", False), "lora_dropout": 0.0, "bias": "none",
                   "target_modules": peft_targets(lora.get("targets", ["all-linear"]))}, f)
    model = PeftModel.from_pretrained(model, peft_dir, is_trainable=True)
    params = {n.replace(".default.", "."): p for n, p in model.named_parameters() if p.requires_grad}
    # Element ids through PEFT's own conversion: where each element of each per-expert tensor lands.
    names = sorted(adapter)
    ids, start = {}, 1
    for n in names:
        ids["base_model.model." + n] = torch.arange(start, start + adapter[n].numel(), dtype=torch.float64).view(adapter[n].shape)
        start += adapter[n].numel()
    placed = convert_peft_adapter_state_dict_for_transformers(model, model.peft_config["default"], ids)
    views = {}
    for n in names:
        lo, hi = ids["base_model.model." + n].min(), ids["base_model.model." + n].max()
        for key, t in placed.items():
            mask = (t >= lo) & (t <= hi)
            if mask.any():
                order = (t[mask] - lo).long()
                p = params[key]
                if not torch.equal(p.detach()[mask], adapter[n].reshape(-1)[order].to(p.dtype)):
                    raise SystemExit(f"{n}: PEFT placed it differently from its conversion of element ids")
                views[n] = (p, mask, order, adapter[n].shape)
                break
        else:
            raise SystemExit(f"PEFT did not take adapter tensor {n}")

    def grad_of(p, mask, order, shape):
        g = p.grad if p.grad is not None else torch.zeros_like(p)
        out = torch.zeros(order.numel(), dtype=g.dtype)
        out[order] = g[mask]
        return out.view(shape)
    return model, {n: (lambda v=v: grad_of(*v)) for n, v in views.items()}


def balance_loss(model, case, router_logits):
    """transformers' load-balancing loss over all documents' tokens, times coef and targets (llmft's sum form)."""
    from transformers.models.qwen3_moe.modeling_qwen3_moe import load_balancing_loss_func
    cfg = model.config
    layers = [torch.cat([doc[i] for doc in router_logits]) for i in range(len(router_logits[0]))]
    aux = load_balancing_loss_func(tuple(layers), cfg.num_experts, cfg.num_experts_per_tok)
    n_targets = sum(int((doc_tensors(case, di)[1] >= 0).sum()) for di in range(len(case["docs"])))
    return cfg.router_aux_loss_coef * aux * n_targets


def load_model(case_dir, case):
    cfg = transformers.AutoConfig.from_pretrained(case_dir)
    if cfg.model_type == "qwen3_moe":
        return load_moe_model(case_dir, case, cfg)
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


def run_docs(model, case, doc_indices, router_logits=None):
    """Logits (float32, or float64 for a float64 model) of the documents one after another, and the summed cross-entropy over their targets."""
    logits, loss = [], 0.0
    for di in doc_indices:
        ids, targets = doc_tensors(case, di)
        if router_logits is None:
            out = model(input_ids=ids, use_cache=False).logits[0]
        else:
            result = model(input_ids=ids, use_cache=False, output_router_logits=True)
            out = result.logits[0]
            router_logits.append(result.router_logits)
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
    cfg = transformers.AutoConfig.from_pretrained(case_dir)
    balance = cfg.model_type == "qwen3_moe" and cfg.router_aux_loss_coef > 0 and (
        cfg.output_router_logits or case["mode"] == "full")
    router_logits = [] if balance else None
    logits, loss = run_docs(model, case, range(len(case["docs"])), router_logits)
    if balance:
        loss = loss + balance_loss(model, case, router_logits)
    loss.backward()
    out = {"logits": logits.detach(), "loss": loss.detach().reshape(1)}
    for name, t in trained.items():
        g = t() if callable(t) else (t.grad if t.grad is not None else torch.zeros_like(t))
        out["grad." + name] = g.contiguous()
    save_file(out, os.path.join(case_dir, "reference.safetensors"))


if __name__ == "__main__":
    main(sys.argv[1])
