#!/usr/bin/env bash
# Tokenizer throughput, llmft against Hugging Face tokenizers 0.23 (npm binding), in one run on the same corpus:
# single-thread and 2-thread encode MB/s and tokenizer.json load time, for Llama 3.1 and Qwen3.
#   bench/tokenizer.sh [BUILD_DIR]      (needs scripts/deps.sh test and a built llmft)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
data=${LLMFT_TEST_DATA:-$root/../shared/data}
oracle=$root/tests/oracle
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
[[ -d $oracle/node_modules/tokenizers ]] || { echo "run scripts/deps.sh test first" >&2; exit 1; }

# The corpus: every string of the shared datasets (short instructions to multi-kB conversations and web text) plus
# the multilingual and adversarial lines; text documents only.
node "$oracle/corpus.js" "$data" "$work/all.jsonl" 2>/dev/null
grep -v '"hex"' "$work/all.jsonl" > "$work/corpus.jsonl"
docs=$(wc -l < "$work/corpus.jsonl"); mb=$(stat -c %s "$work/corpus.jsonl")
echo "corpus: $docs documents, $((mb / 1000000)) MB of JSON lines"
printf '\n%-10s %-22s %10s %10s %8s\n' tokenizer measure llmft hf ratio
for t in llama3_1 qwen3; do
  tj=$data/tokenizers/$t/tokenizer.json
  ours=$("$build/bin/llmft" tokenize --tokenizer "$tj" --input "$work/corpus.jsonl" --bench --threads 2)
  hf1=$(RAYON_NUM_THREADS=1 NODE_PATH=$oracle/node_modules node "$root/bench/tokenizer_hf.js" "$tj" "$work/corpus.jsonl")
  hf2=$(RAYON_NUM_THREADS=2 NODE_PATH=$oracle/node_modules node "$root/bench/tokenizer_hf.js" "$tj" "$work/corpus.jsonl")
  python3 - "$t" "$ours" "$hf1" "$hf2" <<'PY'
import json, sys
t, ours, hf1, hf2 = sys.argv[1], *map(json.loads, sys.argv[2:])
rows = [("encode MB/s, 1 thread", ours["single_thread_MBps"], hf1["MBps"], True),
        ("encode MB/s, 2 threads", ours["batch_MBps"], hf2["MBps"], True),
        ("load ms", ours["load_ms"], hf1["load_ms"], False)]
for name, a, b, higher in rows:
    ratio = a / b if higher else b / a
    print(f"{t:<10} {name:<22} {a:>10.1f} {b:>10.1f} {ratio:>7.1f}x")
PY
done
