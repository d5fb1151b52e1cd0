"""The reference for llmft's NF4 weights (tests/train/test_nf4.cpp): bitsandbytes itself, on its CPU backend.

Writes into the folder given:
  maps.safetensors     bitsandbytes' NF4 levels ("nf4") and its signed dynamic 8-bit map ("dynamic")
  quant.safetensors    for each of several weights W_<k>: the dense weight ("<k>"), what quantize_4bit (nf4,
                       blocksize 64) stores for it ("<k>.packed", "<k>.absmax", and with double quantisation
                       "<k>.nested_absmax", "<k>.offset"), and dequantize_4bit's result ("<k>.dequantized", in the
                       weight's dtype). Keys ending in _plain are quantised without double quantisation.
  base/                a small Llama (float32) as a plain Hugging Face directory
  bnb/                 the same model loaded by transformers with BitsAndBytesConfig(load_in_4bit, nf4, double
                       quantisation) and saved: the checkpoint layout llmft reads as stored
  logits.safetensors   transformers' logits of the 4-bit model for the ids in "ids", in training mode: the QLoRA
                       path (bitsandbytes dequantises and multiplies in fp32). In eval mode on a CPU with AVX512-BF16
                       bitsandbytes repacks the weights for a bf16 kernel instead, which is not the arithmetic trained.
"""
import os
import sys
import warnings

import torch
from safetensors.torch import save_file

warnings.filterwarnings("ignore")
import bitsandbytes.functional as F  # noqa: E402
from transformers import BitsAndBytesConfig, LlamaConfig, LlamaForCausalLM  # noqa: E402

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
torch.manual_seed(0)

save_file({"nf4": F.get_4bit_type("nf4", device="cpu").float().contiguous(), "dynamic": F.create_dynamic_map().contiguous()},
          os.path.join(out, "maps.safetensors"))

weights = {
    "f32": torch.randn(96, 200) * 0.05,                       # 300 blocks: two nested blocks of 256
    "odd": torch.randn(37, 29),                               # 1073 values: a partial last block, an odd count
    "bf16": (torch.randn(64, 128) * 0.02).to(torch.bfloat16),
    "wide": torch.randn(8, 256) * torch.logspace(-3, 1, 256),  # absmaxes over four decades
}
tensors = {}
for k, w in weights.items():
    tensors[k] = w.contiguous()
    for nested, suffix in ((True, ""), (False, "_plain")):
        q, st = F.quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=nested)
        tensors[f"{k}{suffix}.packed"] = q.reshape(-1).contiguous()
        tensors[f"{k}{suffix}.absmax"] = st.absmax.contiguous()
        if nested:
            tensors[f"{k}{suffix}.nested_absmax"] = st.state2.absmax.contiguous()
            tensors[f"{k}{suffix}.offset"] = st.offset.reshape(1).float().contiguous()
        tensors[f"{k}{suffix}.dequantized"] = F.dequantize_4bit(q, st).contiguous()
save_file(tensors, os.path.join(out, "quant.safetensors"))

cfg = LlamaConfig(vocab_size=96, hidden_size=128, intermediate_size=320, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-5, tie_word_embeddings=False)
model = LlamaForCausalLM(cfg).float().eval()
with torch.no_grad():
    for p in model.parameters():  # weights of a trained model's scale, norms away from one
        p.copy_(torch.randn_like(p) * (0.05 if p.dim() == 2 else 0.1) + (1.0 if p.dim() == 1 else 0.0))
model.save_pretrained(os.path.join(out, "base"))
q4 = LlamaForCausalLM.from_pretrained(
    os.path.join(out, "base"), dtype=torch.float32,
    quantization_config=BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                           bnb_4bit_compute_dtype=torch.float32)).train()
q4.save_pretrained(os.path.join(out, "bnb"))
ids = torch.tensor([[5, 17, 3, 44, 8, 29, 0, 90, 61, 2]])
logits = q4(ids).logits[0].detach().float()
save_file({"ids": ids[0].contiguous(), "logits": logits.contiguous()}, os.path.join(out, "logits.safetensors"))
