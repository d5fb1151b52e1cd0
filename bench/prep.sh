#!/usr/bin/env bash
# Data preparation throughput, llmft against the same preparation built from Hugging Face's libraries (npm
# tokenizers 0.23 + @huggingface/jinja, bench/prep_hf.js), in one run on the same files: records/s and MB/s of
# reading, templating, tokenizing and masking, on 1 and 2 threads, for Alpaca (Alpaca template, Llama 3.1) and
# ShareGPT conversations (the Llama 3.1 and Qwen3 chat templates). Both sides exclude tokenizer loading; llmft's
# figure also excludes packing and writing shards, which the summary's wall time includes.
#   bench/prep.sh [BUILD_DIR]      (needs scripts/deps.sh test and a built llmft)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
data=${LLMFT_TEST_DATA:-$root/../shared/data}
oracle=$root/tests/oracle
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
[[ -d $oracle/node_modules/tokenizers ]] || { echo "run scripts/deps.sh test first" >&2; exit 1; }

# Enough input for stable timings: Alpaca 4 times (20,000 records, 8 MB), FastChat's ShareGPT sample 20 times
# (10,000 conversations, 4.7 MB).
mkdir -p "$work/alpaca" "$work/sharegpt"
for i in 1 2 3 4; do cp "$data/datasets/alpaca/alpaca_5000.json" "$work/alpaca/part$i.json"; done
for i in $(seq 1 20); do cp "$data/datasets/fastchat/dummy_conversation.json" "$work/sharegpt/part$i.json"; done

printf '%-10s %-9s %-7s %14s %14s %10s %10s %7s\n' dataset tokenizer threads "llmft rec/s" "HF rec/s" "llmft MB/s" \
  "HF MB/s" ratio
for row in "alpaca llama3_1" "sharegpt llama3_1" "sharegpt qwen3"; do
  set -- $row
  fmt=$1 tok=$2
  for threads in 1 2; do
    rm -rf "$work/out"
    ours=$("$build/bin/llmft" prep data.path="$work/$fmt" data.format="$fmt" data.seq_len=2048 data.threads="$threads" \
             tokenizer.path="$data/tokenizers/$tok/tokenizer.json" output.dir="$work/out" 2>/dev/null)
    hf=$(RAYON_NUM_THREADS=1 NODE_PATH=$oracle/node_modules node "$root/bench/prep_hf.js" "$fmt" \
           "$data/tokenizers/$tok" "$threads" "$work/$fmt"/*.json)
    python3 - "$fmt" "$tok" "$threads" "$ours" "$hf" <<'PY'
import json, re, sys
fmt, tok, threads, ours, hf = sys.argv[1:]
m = re.search(r"records read\s+([\d,]+) \((\d+) records/s, ([\d.]+) MB/s\)", ours)
tokens = re.search(r"tokens\s+([\d,]+)", ours).group(1).replace(",", "")
hf = json.loads(hf)
rps, mbps = float(m.group(2)), float(m.group(3))
print(f"{fmt:<10} {tok:<9} {threads:<7} {rps:>14,.0f} {hf['records_per_s']:>14,.0f} {mbps:>10.1f} {hf['MBps']:>10.2f} "
      f"{mbps / hf['MBps']:>6.1f}x")
if int(tokens) != hf["tokens"]:
    print(f"  note: llmft made {int(tokens):,} tokens, the HF pipeline {hf['tokens']:,}")
PY
  done
done
