#!/usr/bin/env python3
"""Writes a random Llama in Hugging Face layout, bf16 weights (normal, std 0.02; norms at one), untied, in one
model.safetensors, without building it in transformers (the benches' larger models; a few seconds a GB).
  random_llama.py OUT_DIR HIDDEN LAYERS HEADS KV_HEADS MLP VOCAB"""
import json
import os
import sys

import torch
from safetensors.torch import save_file

out = sys.argv[1]
C, L, H, K, F, V = (int(x) for x in sys.argv[2:8])
D = C // H
os.makedirs(out)
json.dump({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": C, "intermediate_size": F, "num_hidden_layers": L,
           "num_attention_heads": H, "num_key_value_heads": K, "vocab_size": V, "rms_norm_eps": 1e-5,
           "max_position_embeddings": 4096, "tie_word_embeddings": False, "torch_dtype": "bfloat16"},
          open(os.path.join(out, "config.json"), "w"))
g = torch.Generator().manual_seed(0)
t = {}


def w(name, *shape):
    t[name] = (torch.randn(*shape, generator=g) * 0.02).bfloat16()


w("model.embed_tokens.weight", V, C)
w("lm_head.weight", V, C)
t["model.norm.weight"] = torch.ones(C).bfloat16()
for i in range(L):
    p = f"model.layers.{i}."
    w(p + "self_attn.q_proj.weight", H * D, C)
    w(p + "self_attn.k_proj.weight", K * D, C)
    w(p + "self_attn.v_proj.weight", K * D, C)
    w(p + "self_attn.o_proj.weight", C, H * D)
    w(p + "mlp.gate_proj.weight", F, C)
    w(p + "mlp.up_proj.weight", F, C)
    w(p + "mlp.down_proj.weight", C, F)
    t[p + "input_layernorm.weight"] = torch.ones(C).bfloat16()
    t[p + "post_attention_layernorm.weight"] = torch.ones(C).bfloat16()
save_file(t, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
