#!/usr/bin/env python3
"""Writes the benchmark model of bench/train.sh as transformers saves it: a Llama of ~40M parameters (hidden 512,
8 layers, 8 heads / 4 key-value heads, MLP 1408, vocabulary 32,000, tied embeddings), random weights.
  make_model.py OUT_DIR"""
import sys

import torch
import transformers

torch.manual_seed(0)
config = transformers.LlamaConfig(vocab_size=32000, hidden_size=512, intermediate_size=1408, num_hidden_layers=8,
                                  num_attention_heads=8, num_key_value_heads=4, rms_norm_eps=1e-5,
                                  tie_word_embeddings=True, max_position_embeddings=2048)
transformers.LlamaForCausalLM(config).save_pretrained(sys.argv[1])
