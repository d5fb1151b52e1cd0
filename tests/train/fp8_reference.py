"""The reference for llmft's FP8 block weights (tests/train/test_fp8.cpp): PyTorch's float8_e4m3fn conversion.

Writes into the folder given:
  table.safetensors    every byte 0..255 (U8 "bytes") and torch's float32 value of it as float8_e4m3fn ("values")
  blocks.safetensors   a [300, 200] F8_E4M3 weight with F32 and BF16 block scales of 128 x 128 ([3, 2]), and
                       torch's dequantisation of each: w.to(float32) * scale expanded over its blocks
  fp8/                 a small Llama in the FP8 block layout Qwen and DeepSeek ship (blocks of 32 x 32, every layer
                       linear quantised, lm_head in modules_to_not_convert) with quantization_config in config.json
  ref/                 the same model with torch's dequantised float32 weights, as a plain Hugging Face directory
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
g = torch.Generator().manual_seed(0)
F8 = torch.float8_e4m3fn


def expand(scale, rows, cols, br, bc):
    return scale.float().repeat_interleave(br, 0)[:rows].repeat_interleave(bc, 1)[:, :cols]


b = torch.arange(256, dtype=torch.uint8)
save_file({"bytes": b, "values": b.view(F8).float()}, os.path.join(out, "table.safetensors"))

w = (torch.randn(300, 200, generator=g) * 100).clamp(-448, 448).to(F8)
s32 = torch.rand(3, 2, generator=g) * 0.01 + 1e-4
s16 = s32.bfloat16()
save_file({"w": w, "w_scale_inv": s32, "w_bf16scale_scale_inv": s16,
           "expected_f32": w.float() * expand(s32, 300, 200, 128, 128),
           "expected_bf16": w.float() * expand(s16, 300, 200, 128, 128)}, os.path.join(out, "blocks.safetensors"))

C, F, L, H, K, V, BS = 64, 160, 2, 4, 2, 300, 32
D = C // H
cfg = {"architectures": ["LlamaForCausalLM"], "hidden_size": C, "intermediate_size": F, "num_hidden_layers": L,
       "num_attention_heads": H, "num_key_value_heads": K, "vocab_size": V, "rms_norm_eps": 1e-5,
       "max_position_embeddings": 256, "tie_word_embeddings": False, "torch_dtype": "bfloat16"}
fp8, ref = {}, {}
fp8["model.embed_tokens.weight"] = ref["model.embed_tokens.weight"] = torch.randn(V, C, generator=g).bfloat16()
fp8["lm_head.weight"] = ref["lm_head.weight"] = torch.randn(V, C, generator=g).bfloat16()
fp8["model.norm.weight"] = ref["model.norm.weight"] = (1 + 0.1 * torch.randn(C, generator=g)).bfloat16()
for i in range(L):
    p = f"model.layers.{i}."
    for name, shape in [("self_attn.q_proj", (H * D, C)), ("self_attn.k_proj", (K * D, C)),
                        ("self_attn.v_proj", (K * D, C)), ("self_attn.o_proj", (C, H * D)),
                        ("mlp.gate_proj", (F, C)), ("mlp.up_proj", (F, C)), ("mlp.down_proj", (C, F))]:
        full = torch.randn(*shape, generator=g) * 0.1
        rows, cols = shape
        br, bc = (rows + BS - 1) // BS, (cols + BS - 1) // BS
        pad = torch.zeros(br * BS, bc * BS)
        pad[:rows, :cols] = full
        amax = pad.view(br, BS, bc, BS).abs().amax(dim=(1, 3)).clamp(min=1e-12)
        scale = amax / 448.0  # what the checkpoints store as weight_scale_inv: the factor back to the weight
        q = (full / expand(scale, rows, cols, BS, BS)).clamp(-448, 448).to(F8)
        fp8[p + name + ".weight"] = q
        fp8[p + name + ".weight_scale_inv"] = scale
        ref[p + name + ".weight"] = q.float() * expand(scale, rows, cols, BS, BS)
    for n in ["input_layernorm.weight", "post_attention_layernorm.weight"]:
        fp8[p + n] = ref[p + n] = (1 + 0.1 * torch.randn(C, generator=g)).bfloat16()
for d, tensors, extra in [("fp8", fp8, {"quantization_config": {"quant_method": "fp8", "fmt": "e4m3",
                                                               "activation_scheme": "dynamic",
                                                               "weight_block_size": [BS, BS],
                                                               "modules_to_not_convert": ["lm_head"]}}),
                          ("ref", {k: v.float() for k, v in ref.items()}, {})]:
    os.makedirs(os.path.join(out, d), exist_ok=True)
    json.dump({**cfg, **extra}, open(os.path.join(out, d, "config.json"), "w"))
    save_file(tensors, os.path.join(out, d, "model.safetensors"), metadata={"format": "pt"})
