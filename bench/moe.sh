#!/usr/bin/env bash
# Mixture-of-experts LoRA training, llmft against transformers 5 + PEFT, in one run, on the same Qwen3-MoE-shaped
# model (random weights that transformers writes as a Hugging Face directory: hidden 512, 4 layers, 8/4 heads of 64,
# 32 experts of 256 with top-4 routing and renormalised weights, 32,000-token vocabulary, untied; 86M parameters,
# 16M of them on a token's path), the same batch (4 rows x 512 tokens) and step (token-mean cross-entropy,
# backward, clipping at 1.0, AdamW), 2 threads each:
#   llmft     bench/bench_train.cpp (Trainer::step): LoRA r=16 on q/k/v/o and on every expert's gate, up and down
#   hf+peft   transformers' Qwen3MoeForCausalLM (SDPA; experts fused, looped over the experts hit) + PEFT: LoRA r=16 on
#             q/k/v/o and target_parameters mlp.experts.gate_up_proj / down_proj (one rank-16 LoRA per expert and
#             fused matrix), bench/train_torch.py
# in float32 and bfloat16. Prints a markdown table: tokens/s, peak resident memory and llmft's ratios.
#   bench/moe.sh [BUILD_DIR] [STEPS] [THREADS]      (needs scripts/deps.sh test; about 10 minutes on 2 cores)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
steps=${2:-3}
threads=${3:-2}
py=${LLMFT_PYTHON:-${LLMFT_VENV:-$root/.venv}/bin/python}
tok=${LLMFT_TEST_DATA:-$root/../shared/data}/models/stories260K-hf/tokenizer.json  # tokenizes llmft's documents
[[ -f $tok ]] || { echo "no $tok: this bench needs ../shared/data"; exit 1; }
[[ -x $build/bench/bench_train ]] || cmake --build "$build" --target bench_train > /dev/null
work=$(mktemp -d "${TMPDIR:-/tmp}/llmft-moe-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
"$py" - "$work/model" <<'PY' > /dev/null 2>&1
import sys
import torch
import transformers
torch.manual_seed(0)
cfg = transformers.Qwen3MoeConfig(vocab_size=32000, hidden_size=512, intermediate_size=1536, moe_intermediate_size=256,
                                  num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=4, head_dim=64,
                                  num_experts=32, num_experts_per_tok=4, norm_topk_prob=True, tie_word_embeddings=False,
                                  max_position_embeddings=4096)
model = transformers.Qwen3MoeForCausalLM(cfg)
with torch.no_grad():
    for p in model.parameters():
        if p.dim() >= 2:
            p.normal_(0, 0.02)
model.save_pretrained(sys.argv[1])
PY
echo "| dtype | impl | tokens/s | peak RSS MB | llmft speed | llmft memory |"
echo "|---|---|---|---|---|---|"
for dtype in float32 bfloat16; do
  "$build/bench/bench_train" "$work/model" lora "$steps" "$threads" "$dtype" "$tok" > "$work/llmft.json"
  OMP_NUM_THREADS=$threads "$py" "$root/bench/train_torch.py" hf "$work/model" lora "$steps" "$threads" "$dtype" \
    2> "$work/hf.err" | tail -1 > "$work/hf.json" || { cat "$work/hf.err"; exit 1; }
  "$py" - "$dtype" "$work/llmft.json" "$work/hf.json" <<'PY'
import json, sys
dtype, ours, theirs = sys.argv[1], json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
print(f"| {dtype} | llmft | {ours['tokens_per_s']:,.0f} | {ours['peak_rss_mb']:,.0f} | "
      f"{ours['tokens_per_s'] / theirs['tokens_per_s']:.2f}x | {ours['peak_rss_mb'] / theirs['peak_rss_mb']:.2f}x |")
print(f"| {dtype} | transformers + PEFT | {theirs['tokens_per_s']:,.0f} | {theirs['peak_rss_mb']:,.0f} | 1x | 1x |")
PY
done
