#!/usr/bin/env bash
# Activation checkpointing (train.activation_checkpointing), in one run: peak memory (GNU time's max RSS) and step
# time of LoRA (r=16, every linear) and full fine-tuning on bench/train.sh's 41M Llama (8 layers, hidden 512), bf16,
# 2 rows of 2,048 tokens a step, 4 steps, without and with it; the llmft program, 2 threads. The step time is the
# mean of steps 2 to 4 (from the logged tokens/s), the memory that of the whole process.
#   bench/checkpointing.sh [BUILD_DIR]      (needs scripts/deps.sh test and ../shared/data; about 5 minutes)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
py=${LLMFT_PYTHON:-${LLMFT_VENV:-$root/.venv}/bin/python}
tok=${LLMFT_TEST_DATA:-$root/../shared/data}/models/stories260K-hf/tokenizer.json
[[ -f $tok ]] || { echo "no $tok: this bench needs ../shared/data"; exit 1; }
[[ -x $build/bin/llmft ]] || cmake --build "$build" --target llmft_cli > /dev/null
model=$build/bench-model
[[ -f $model/model.safetensors ]] || "$py" "$root/bench/make_model.py" "$model" > /dev/null 2>&1
work=$(mktemp -d "${TMPDIR:-/tmp}/llmft-ckpt-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
printf '| mode | activation_checkpointing | peak RSS MB | s / step |\n|---|---|---|---|\n'
for mode in lora full; do
  for ckpt in false true; do
    out=$work/$mode-$ckpt
    /usr/bin/time -f '%M' -o "$work/rss" "$build/bin/llmft" train model.path="$model" tokenizer.path="$tok" \
      model.dtype=bfloat16 train.mode=$mode lora.r=16 lora.alpha=32 lora.dropout=0 lora.target_modules=all-linear \
      data.synthetic_records=400 data.seq_len=2048 data.eval_count=0 train.micro_batch_size=2 train.max_steps=4 \
      train.activation_checkpointing=$ckpt log.every=1 generate.num_samples=0 checkpoint.every=0 \
      output.dir="$out" > "$work/log" 2>&1 || { cat "$work/log"; exit 1; }
    step=$("$py" - "$out/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"loss"' in l and '"eval_loss"' not in l]
t = [4096 / r["tokens_per_second"] for r in rows if r["step"] >= 2]
print(f"{sum(t) / len(t):.2f}")
PY
)
    printf '| %s | %s | %d | %s |\n' $mode $ckpt $(($(cat "$work/rss") / 1024)) "$step"
  done
done
