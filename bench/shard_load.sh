#!/usr/bin/env bash
# Sharded loading: peak memory of each rank when `llmft generate` runs a ~1 GB model split across 4 ranks (tensor
# parallelism: each rank reads only its slices of the memory-mapped safetensors, and releases the pages of each
# tensor once copied), against one process loading the whole model; and the same for one LoRA training step at
# ZeRO-3 (each rank reads only its 1/4 of every layer's buffer) against one process; in one run, on the same files. The model: a
# random Llama in Hugging Face layout, bf16, hidden 2048, 8 layers, GQA 16/8 heads, MLP 5632, 32,000-token
# vocabulary, untied (1.05 GB in one model.safetensors); the stories260K tokenizer (its ids are a subset).
# Reports peak RSS (GNU time) and peak anonymous memory (RssAnon sampled every 20 ms) per process, and the same
# for the tiny stories260K model (what the runtime itself takes: libtorch and the program).
#   bench/shard_load.sh [BUILD_DIR] [RANKS]     (default 4 ranks; needs scripts/deps.sh test, ../shared/data, GNU time)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
ranks=${2:-4}
py=${LLMFT_PYTHON:-${LLMFT_VENV:-$root/.venv}/bin/python}
data=${LLMFT_TEST_DATA:-$root/../shared/data}
tiny=$data/models/stories260K-hf
[[ -f $tiny/tokenizer.json ]] || { echo "no $tiny: this bench needs ../shared/data"; exit 1; }
[[ -x $build/bin/llmft ]] || cmake --build "$build" --target llmft_cli > /dev/null
work=$(mktemp -d "${TMPDIR:-/tmp}/llmft-shard-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
"$py" "$root/bench/random_llama.py" "$work/model" 2048 8 16 8 5632 32000
sync
size=$(du -sm "$work/model" | cut -f1)
export OMP_NUM_THREADS=1

# Runs `llmft <args>` as $2 ranks (tag $1); writes "<peak RSS kB> <peak RssAnon kB>" per rank to $work/$1.rank<r>.
run() {
  local tag=$1 n=$2 port pids=()
  shift 2
  port=$(( 20000 + RANDOM % 20000 ))
  for ((r = 0; r < n; r++)); do
    RANK=$r WORLD_SIZE=$n LOCAL_RANK=$r LOCAL_WORLD_SIZE=$n MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
      /usr/bin/time -f '%M' -o "$work/$tag.rank$r.rss" "$build/bin/llmft" "$@" > "$work/$tag.rank$r.log" 2>&1 &
    pids+=($!)
  done
  declare -A anon
  while :; do
    local alive=0
    for ((r = 0; r < n; r++)); do
      kill -0 "${pids[$r]}" 2>/dev/null || continue
      alive=1
      for p in $(pgrep -P "${pids[$r]}" 2>/dev/null); do
        a=$(awk '/RssAnon/ {print $2}' /proc/$p/status 2>/dev/null || true)
        [[ -n $a && $a -gt ${anon[$r]:-0} ]] && anon[$r]=$a
      done
    done
    ((alive)) || break
    sleep 0.02
  done
  for ((r = 0; r < n; r++)); do
    wait "${pids[$r]}" || { cat "$work/$tag.rank$r.log"; exit 1; }
    echo "$(cat "$work/$tag.rank$r.rss") ${anon[$r]:-0}" > "$work/$tag.rank$r"
  done
}
gen() {
  echo generate model.path="$1" model.dtype=bfloat16 tokenizer.path="$tiny/tokenizer.json" data.template=none \
    generate.max_new_tokens=4 --prompt Once
}
# One LoRA step on 256-token rows of the generated dataset; ZeRO-3 for the world ($2).
train() {
  echo train model.path="$work/model" model.dtype=bfloat16 tokenizer.path="$tiny/tokenizer.json" train.mode=lora \
    data.synthetic_records=64 data.seq_len=256 data.eval_count=0 train.max_steps=1 train.micro_batch_size=1 \
    train.grad_accum=$((ranks / $1)) generate.num_samples=0 dist.zero_stage=$2 output.dir="$work/out-$1"
}
# shellcheck disable=SC2046
run tiny 1 $(gen "$tiny")
# shellcheck disable=SC2046
run whole 1 $(gen "$work/model")
# shellcheck disable=SC2046
run split "$ranks" $(gen "$work/model")
# shellcheck disable=SC2046
run train1 1 $(train 1 0)
# shellcheck disable=SC2046
run train3 "$ranks" $(train "$ranks" 3)

printf 'model of %d MB (bf16), loaded by llmft generate\n' "$size"
printf '%-40s %12s %14s\n' "" "peak RSS MB" "peak anon MB"
row() { read -r rss an < "$work/$2"; printf '%-40s %12d %14d\n' "$1" $((rss / 1024)) $((an / 1024)); }
row "runtime alone (stories260K, 1 MB)" tiny.rank0
row "one process, whole model" whole.rank0
for ((r = 0; r < ranks; r++)); do row "$ranks ranks (tensor parallel), rank $r" "split.rank$r"; done
row "LoRA training step, one process" train1.rank0
for ((r = 0; r < ranks; r++)); do row "LoRA step, $ranks ranks ZeRO-3, rank $r" "train3.rank$r"; done
read -r w_rss w_an < "$work/whole.rank0"; read -r t_rss t_an < "$work/tiny.rank0"
max=0; for ((r = 0; r < ranks; r++)); do read -r s _ < "$work/split.rank$r"; ((s > max)) && max=$s; done
awk -v w="$w_rss" -v s="$max" -v t="$t_rss" -v n="$ranks" 'BEGIN {
  printf "generate, largest rank: %.2fx the whole-model process (1/%d = %.2f); above the runtime alone: %.2fx\n",
         s / w, n, 1 / n, (s - t) / (w - t) }'
read -r w_rss _ < "$work/train1.rank0"
max=0; for ((r = 0; r < ranks; r++)); do read -r s _ < "$work/train3.rank$r"; ((s > max)) && max=$s; done
awk -v w="$w_rss" -v s="$max" -v t="$t_rss" 'BEGIN {
  printf "train (ZeRO-3), largest rank: %.2fx one process; above the runtime alone: %.2fx\n", s / w, (s - t) / (w - t) }'
