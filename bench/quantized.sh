#!/usr/bin/env bash
# Quantised frozen bases (model.quantize), in one run on this machine:
#  1. Peak memory (GNU time's max RSS) and LoRA step time of a ~1B Llama-shaped model (random weights in Hugging Face
#     layout, bf16 in the file: hidden 2048, 20 layers, GQA 32/8 heads, MLP 5632, 32,000-token vocabulary, untied;
#     1.03B parameters), LoRA r=16 on every linear, one row of $TOKENS tokens a step (default 128), 3 steps: float32 and bfloat16 bases
#     against NF4 and FP8 bases (bf16 compute). The step time is the mean of steps 2 and 3.
#  2. QLoRA tracking LoRA: stories260K (pretrained) on Alpaca, 50 steps of LoRA r=8 on every linear, the same seed and
#     data with the base in float32 and in NF4; the largest difference of the logged training losses.
#  3. Merging that QLoRA adapter (llmft export): into the dequantised NF4 weights and into the full-precision ones;
#     the drift between the two (merge_report.json) beside the size of the adapter's own update.
#   [TOKENS=128] bench/quantized.sh [BUILD_DIR]     (needs scripts/deps.sh test, ../shared/data, GNU time; about 10 minutes)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
tokens=${TOKENS:-128}
py=${LLMFT_PYTHON:-${LLMFT_VENV:-$root/.venv}/bin/python}
data=${LLMFT_TEST_DATA:-$root/../shared/data}
tiny=$data/models/stories260K-hf
[[ -f $tiny/tokenizer.json ]] || { echo "no $tiny: this bench needs ../shared/data"; exit 1; }
[[ -x $build/bin/llmft ]] || cmake --build "$build" --target llmft_cli > /dev/null
work=$(mktemp -d "${TMPDIR:-/tmp}/llmft-quant-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
"$py" "$root/bench/random_llama.py" "$work/model" 2048 20 32 8 5632 32000
sync
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}

# steps <metrics.jsonl>: the mean seconds of steps 2.. from the logged tokens/s ($tokens tokens a step: the generated
# records are packed into full rows).
steps() {
  "$py" - "$1" "$tokens" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"loss"' in l and '"eval_loss"' not in l]
t = [r["tokens_per_second"] for r in rows if r["step"] >= 2]
print(f"{sum(int(sys.argv[2]) / x for x in t) / len(t):.2f}")
PY
}
printf '%-28s %14s %12s\n' "1.03B Llama, $tokens tokens" "peak RSS MB" "s / step"
for run in "float32 none" "bfloat16 none" "bfloat16 nf4" "bfloat16 fp8"; do
  read -r dtype quant <<< "$run"
  out=$work/out-$dtype-$quant
  /usr/bin/time -f '%M' -o "$work/rss" "$build/bin/llmft" train model.path="$work/model" model.dtype="$dtype" \
    model.quantize="$quant" tokenizer.path="$tiny/tokenizer.json" train.mode=lora lora.r=16 lora.alpha=32 \
    lora.target_modules=all-linear data.synthetic_records=64 data.seq_len="$tokens" data.eval_count=0 train.max_steps=3 \
    train.micro_batch_size=1 train.grad_accum=1 log.every=1 generate.num_samples=0 output.dir="$out" \
    > "$work/log" 2>&1 || { cat "$work/log"; exit 1; }
  printf '%-28s %14d %12s\n' "$dtype base, quantize=$quant" $(($(cat "$work/rss") / 1024)) "$(steps "$out/metrics.jsonl")"
done

for quant in none nf4; do
  "$build/bin/llmft" train model.path="$tiny" data.path="$data/datasets/alpaca/alpaca_5000.json" data.format=alpaca \
    data.seq_len=256 data.eval_count=0 train.mode=lora lora.r=8 lora.alpha=16 lora.target_modules=all-linear \
    train.max_steps=50 train.micro_batch_size=4 log.every=1 generate.num_samples=0 model.quantize=$quant \
    output.dir="$work/track-$quant" > "$work/log" 2>&1 || { cat "$work/log"; exit 1; }
done
"$py" - "$work/track-none/metrics.jsonl" "$work/track-nf4/metrics.jsonl" <<'PY'
import json, sys
def losses(p): return {r["step"]: r["loss"] for r in map(json.loads, open(p)) if "loss" in r and "eval_loss" not in r}
a, b = losses(sys.argv[1]), losses(sys.argv[2])
d = max(abs(a[s] - b[s]) / a[s] for s in a)
print(f"stories260K LoRA, 50 steps: loss {a[1]:.4f} -> {a[50]:.4f} (float32 base), {b[1]:.4f} -> {b[50]:.4f} (NF4); "
      f"largest relative difference of a step's loss {d * 100:.2f}%")
PY
for into in dequantized original; do
  "$build/bin/llmft" export model.path="$tiny" model.quantize=nf4 output.dir="$work/track-nf4" \
    export.out="$work/merged-$into" export.merge_into=$into > "$work/log" 2>&1 || { cat "$work/log"; exit 1; }
done
"$py" - "$work/merged-original/merge_report.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))["drift"]
print(f"merging the NF4-trained adapter: the full-precision weights differ from the dequantised ones it trained against "
      f"by {d['relative'] * 100:.2f}% (worst tensor {d['worst_relative'] * 100:.2f}%, {d['worst_tensor']}); the "
      f"adapter's update is {d['adapter_update_relative'] * 100:.2f}% of the weights")
PY
