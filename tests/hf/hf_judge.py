#!/usr/bin/env python3
"""The Hugging Face stack judging what llmft writes and reads (tests/hf/*.cpp run it).

Every check loads files with the consumers' own public entry points (transformers' from_pretrained, PEFT's
PeftModel.from_pretrained / get_peft_model / save_pretrained / merge_and_unload, AutoTokenizer, GenerationConfig)
and reports what they did: a warning logged or raised while loading is an error here, as are missing or unexpected
keys. Results (logits, token ids) are written to files for the C++ test to compare with llmft's, with the
tolerances written there.

  hf_judge.py make-base ARCH DIR TOKENIZER_DIR     a small random model of ARCH saved by transformers (+ tokenizer)
  hf_judge.py peft-logits BASE ADAPTER IDS OUT     PeftModel.from_pretrained(base, adapter): logits of IDS
  hf_judge.py peft-train BASE OUT_ADAPTER SPEC IDS OUT
                                                   a LoRA trained by PEFT (SPEC: JSON of LoraConfig fields), saved
                                                   with save_pretrained; its logits of IDS
  hf_judge.py merged MERGED BASE ADAPTER IDS OUT   the merged checkpoint through AutoModelForCausalLM, its tokenizer
                                                   and generation config; logits of IDS from it and from PEFT's
                                                   merge_and_unload() of BASE + ADAPTER
IDS is a JSON list of token-id lists; OUT a safetensors file ("logits.<i>" per sequence, fp32) or JSON.
"""
import contextlib
import json
import logging
import os
import shutil
import sys
import warnings

import torch
import transformers
from safetensors.torch import save_file

torch.manual_seed(0)
torch.set_num_threads(1)


class Complaints(logging.Handler):
    """Collects WARNING and above from the loggers of transformers, PEFT and safetensors, and Python warnings."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.records = []

    def emit(self, record):
        self.records.append(f"{record.name}: {record.getMessage()}")


# PEFT 0.21.2 converting a per-expert adapter to transformers 5's fused experts adds rank_pattern / alpha_pattern
# entries for gate_up_proj (rank and alpha doubled), applies them (the LoRA of gate_up_proj has rank 2r), and then
# warns that they matched no targeted module: it matches the patterns against module names, and gate_up_proj is a
# parameter. The logits compared in the tests show the patterns took effect; only this warning is let through.
KNOWN_FALSE_WARNINGS = (
    "RuntimeWarning: The following rank_pattern keys did not match any targeted module and were ignored: "
    "['.*\\\\.gate_up_proj'].",
    "RuntimeWarning: The following alpha_pattern keys did not match any targeted module and were ignored: "
    "['.*\\\\.gate_up_proj'].",
)


@contextlib.contextmanager
def no_complaints(what):
    handler = Complaints()
    loggers = [logging.getLogger(n) for n in ("", "transformers", "peft", "safetensors", "huggingface_hub")]
    for lg in loggers:
        lg.addHandler(handler)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for lg in loggers:
        lg.removeHandler(handler)
    # Deprecation notices are between the libraries themselves (PEFT calling a transformers API that is going away),
    # not about the files loaded: everything else counts.
    found = handler.records + [f"{w.category.__name__}: {w.message}" for w in caught
                               if not issubclass(w.category, (DeprecationWarning, FutureWarning))]
    found = [f for f in found if f not in KNOWN_FALSE_WARNINGS]
    if found:
        raise SystemExit(f"{what} complained:\n  " + "\n  ".join(found))


CONFIGS = {  # small random configurations, one per family, each with its distinctive features
    "llama": dict(architectures=["LlamaForCausalLM"], model_type="llama", hidden_size=64, intermediate_size=96,
                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5,
                  tie_word_embeddings=True, max_position_embeddings=256,
                  rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                "original_max_position_embeddings": 32}, rope_theta=500000.0),
    # head_dim 32: a head size vLLM's CPU attention kernels take (stories260K's 8 is not)
    "llama_hd32": dict(architectures=["LlamaForCausalLM"], model_type="llama", hidden_size=64, intermediate_size=172,
                       num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=32,
                       rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=True, max_position_embeddings=512),
    "mistral": dict(architectures=["MistralForCausalLM"], model_type="mistral", hidden_size=64, intermediate_size=112,
                    num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=2, rms_norm_eps=1e-5,
                    tie_word_embeddings=False, sliding_window=7, max_position_embeddings=256),
    "qwen2": dict(architectures=["Qwen2ForCausalLM"], model_type="qwen2", hidden_size=64, intermediate_size=88,
                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1, rms_norm_eps=1e-6,
                  rope_theta=1000000.0, tie_word_embeddings=True, max_position_embeddings=256),
    "qwen3": dict(architectures=["Qwen3ForCausalLM"], model_type="qwen3", hidden_size=64, intermediate_size=96,
                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=32, rms_norm_eps=1e-6,
                  rope_theta=1000000.0, tie_word_embeddings=True, max_position_embeddings=256),
    # a mixture: 4 experts, top-2 renormalised, layer 1 a dense MLP (mlp_only_layers)
    "qwen3_moe": dict(architectures=["Qwen3MoeForCausalLM"], model_type="qwen3_moe", hidden_size=64,
                      intermediate_size=96, moe_intermediate_size=32, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, head_dim=32, num_experts=4, num_experts_per_tok=2, norm_topk_prob=True,
                      mlp_only_layers=[1], rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=False,
                      max_position_embeddings=256),
}


def make_base(arch, out_dir, tokenizer_dir):
    vocab = json.load(open(os.path.join(tokenizer_dir, "config.json")))["vocab_size"]
    fields = dict(CONFIGS[arch])
    model_type = fields.pop("model_type")
    config = transformers.AutoConfig.for_model(model_type, vocab_size=vocab, bos_token_id=1, eos_token_id=2,
                                               **fields)
    cls = getattr(transformers, fields["architectures"][0])
    model = cls(config)
    with torch.no_grad():  # larger than the default init, so that every weight matters in the logits
        for p in model.parameters():
            if p.dim() >= 2:  # matrices, and transformers 5's fused (E, out, in) experts
                p.normal_(0, 0.2)
    model.save_pretrained(out_dir)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(tokenizer_dir, f), os.path.join(out_dir, f))


def load_base(path):
    return transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager")


def logits_of(model, ids_path):
    out = {}
    with torch.no_grad():
        for i, ids in enumerate(json.load(open(ids_path))):
            out[f"logits.{i}"] = model(input_ids=torch.tensor([ids])).logits[0].float().contiguous()
    return out


def peft_logits(base, adapter, ids, out):
    from peft import PeftModel
    with no_complaints(f"PeftModel.from_pretrained(<{base}>, {adapter})"):
        model = PeftModel.from_pretrained(load_base(base), adapter)
    model.eval()
    save_file(logits_of(model, ids), out)


def peft_train(base, adapter_out, spec_json, ids, out):
    from peft import LoraConfig, get_peft_model
    spec = json.loads(spec_json)
    model = get_peft_model(load_base(base), LoraConfig(task_type="CAUSAL_LM", lora_dropout=0.0, **spec))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-2)
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(1)
    for _ in range(4):  # a few real optimizer steps, so that both A and B are trained values
        x = torch.randint(0, vocab, (2, 12), generator=g)
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.save_pretrained(adapter_out)
    model.eval()
    save_file(logits_of(model, ids), out)


def merged(merged_dir, base, adapter, ids, out):
    from peft import PeftModel
    with no_complaints(f"AutoModelForCausalLM.from_pretrained({merged_dir})"):
        ours = load_base(merged_dir)
    with no_complaints(f"AutoTokenizer.from_pretrained({merged_dir})"):
        tok = transformers.AutoTokenizer.from_pretrained(merged_dir)
    with no_complaints(f"GenerationConfig.from_pretrained({merged_dir})"):
        gen = transformers.GenerationConfig.from_pretrained(merged_dir)
    with no_complaints(f"PeftModel.from_pretrained(<{base}>, {adapter})"):
        peft_model = PeftModel.from_pretrained(load_base(base), adapter)
    reference = peft_model.merge_and_unload()
    result = {f"ours.{k}": v for k, v in logits_of(ours, ids).items()}
    result.update({f"peft.{k}": v for k, v in logits_of(reference, ids).items()})
    save_file(result, out)
    text = "Once upon a time, there was a little girl named Lily."
    json.dump({"tokenizer_class": type(tok).__name__, "ids": tok(text)["input_ids"],
               "bos_token_id": gen.bos_token_id, "eos_token_id": gen.eos_token_id},
              open(out + ".json", "w"))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"make-base": make_base, "peft-logits": peft_logits, "peft-train": peft_train, "merged": merged}[cmd](*args)
