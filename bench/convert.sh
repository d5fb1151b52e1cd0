#!/usr/bin/env bash
# Meta checkpoint conversion, llmft against transformers' own converter (convert_llama_weights_to_hf.py of 4.46.3,
# its write_model() on the installed transformers; scripts/deps.sh test fetches it), in one run on the same input:
# a synthetic Llama in Meta's layout, bf16, dim 2048, 8 layers, GQA, 32,000-token vocabulary, split over 2
# model-parallel files (about 1 GB). Reports wall time and peak memory: for llmft the peak anonymous memory
# (RssAnon, sampled every 20 ms; its mapped input is page cache) and the peak RSS; for transformers the peak RSS.
#   bench/convert.sh [BUILD_DIR] [MAX_SHARD_MB]       (default 100 MB shards; needs scripts/deps.sh test and GNU time)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
shard_mb=${2:-100}
py=${LLMFT_PYTHON:-${LLMFT_VENV:-$root/.venv}/bin/python}
conv=$("$py" -c 'import sys; print(sys.prefix)')/share/llmft-oracles/convert_llama_weights_to_hf.py
[[ -f $conv ]] || { echo "no $conv: run scripts/deps.sh test"; exit 1; }
[[ -x $build/bin/llmft ]] || cmake --build "$build" --target llmft_cli > /dev/null
work=$(mktemp -d "${TMPDIR:-/tmp}/llmft-convert-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
"$py" - "$work/meta" <<'PY'
import json, os, sys, torch
out = sys.argv[1]; os.makedirs(out)
dim, layers, heads, kv, vocab, files = 2048, 8, 16, 8, 32000, 2
hd, hidden = dim // heads, 256 * ((int(8 * dim / 3) + 255) // 256)
json.dump({"dim": dim, "n_layers": layers, "n_heads": heads, "n_kv_heads": kv, "multiple_of": 256,
           "norm_eps": 1e-5, "vocab_size": -1}, open(os.path.join(out, "params.json"), "w"))
g = torch.Generator().manual_seed(0)
shards = [{} for _ in range(files)]
def put(k, shape, axis):
    v = torch.randn(*shape, generator=g).bfloat16()
    for s, p in zip(shards, [v] * files if axis is None else v.chunk(files, axis)):
        s[k] = p.clone()
put("tok_embeddings.weight", (vocab, dim), 1); put("norm.weight", (dim,), None); put("output.weight", (vocab, dim), 0)
for i in range(layers):
    p = f"layers.{i}."
    for name, shape, axis in [("attention.wq", (dim, dim), 0), ("attention.wk", (kv * hd, dim), 0),
                              ("attention.wv", (kv * hd, dim), 0), ("attention.wo", (dim, dim), 1),
                              ("feed_forward.w1", (hidden, dim), 0), ("feed_forward.w2", (dim, hidden), 1),
                              ("feed_forward.w3", (hidden, dim), 0)]:
        put(p + name + ".weight", shape, axis)
    put(p + "attention_norm.weight", (dim,), None); put(p + "ffn_norm.weight", (dim,), None)
for i, s in enumerate(shards):
    torch.save(s, os.path.join(out, f"consolidated.{i:02d}.pth"))
PY
sync
size=$(du -sm "$work/meta" | cut -f1)

# llmft: wall time, peak RSS (GNU time), and peak RssAnon sampled while it runs.
start=$(date +%s.%N)
/usr/bin/time -f '%M' -o "$work/llmft.rss" "$build/bin/llmft" convert --meta "$work/meta" --out "$work/llmft" \
  --max-shard-mb "$shard_mb" > /dev/null &
tpid=$!
anon=0
while kill -0 $tpid 2>/dev/null; do
  for p in $(pgrep -P $tpid 2>/dev/null); do
    a=$(awk '/RssAnon/ {print $2}' /proc/$p/status 2>/dev/null || true)
    [[ -n $a && $a -gt $anon ]] && anon=$a
  done
  sleep 0.02
done
wait $tpid
llmft_s=$(awk "BEGIN {print $(date +%s.%N) - $start}")

start=$(date +%s.%N)
/usr/bin/time -f '%M' -o "$work/hf.rss" "$py" - "$conv" "$work/meta" "$work/hf" > /dev/null 2>&1 <<'PY'
import importlib.util, sys
spec = importlib.util.spec_from_file_location("convert_llama", sys.argv[1])
m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
m.write_model(model_path=sys.argv[3], input_base_path=sys.argv[2], num_shards=2, llama_version="2",
              safe_serialization=True, vocab_size=32000)
PY
hf_s=$(awk "BEGIN {print $(date +%s.%N) - $start}")

printf 'Meta checkpoint of %d MB, 2 files -> Hugging Face, %d MB shards\n' "$size" "$shard_mb"
printf '%-34s %8s %14s %12s\n' "" seconds "peak anon MB" "peak RSS MB"
printf '%-34s %8.2f %14d %12d\n' "llmft convert" "$llmft_s" $((anon / 1024)) $(($(cat "$work/llmft.rss") / 1024))
printf '%-34s %8.2f %14s %12d\n' "transformers write_model (4.46.3)" "$hf_s" "-" $(($(cat "$work/hf.rss") / 1024))
awk -v a="$hf_s" -v b="$llmft_s" -v r1="$(cat "$work/llmft.rss")" -v r2="$(cat "$work/hf.rss")" \
  'BEGIN {printf "llmft: %.1fx faster, %.2fx the peak RSS\n", a / b, r1 / r2}'
