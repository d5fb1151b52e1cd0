#!/usr/bin/env bash
# Training throughput, llmft against PyTorch eager (Python, autograd, torch.optim.AdamW) on the same ~40M-parameter
# Llama-architecture model, LoRA setup and batch, in one run. PyTorch runs with 1 and 2 intra-op threads and the
# faster counts. Also reports the fraction of the machine's measured GEMM FLOP/s that an llmft step reaches.
#   bench/train.sh [BUILD_DIR] [STEPS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
steps=${2:-6}
[[ -x $build/bench/bench_train ]] || cmake --build "$build" --target bench_train > /dev/null
printf '%-6s %-14s %14s %14s %8s %16s\n' mode impl tokens/s step-seconds ratio fraction-of-GEMM
for mode in lora full; do
  ours=$("$build/bench/bench_train" "$mode" "$steps")
  t1=$(/usr/bin/python3 "$root/bench/train_torch.py" "$mode" "$steps" 1)
  t2=$(/usr/bin/python3 "$root/bench/train_torch.py" "$mode" "$steps" 2)
  python3 - "$ours" "$t1" "$t2" <<'PY'
import json, sys
ours, t1, t2 = map(json.loads, sys.argv[1:])
ref = max(t1, t2, key=lambda r: r["tokens_per_s"])
print(f"{ours['mode']:<6} {'llmft':<14} {ours['tokens_per_s']:>14.0f} {ours['step_s']:>14.3f} {ours['tokens_per_s'] / ref['tokens_per_s']:>7.2f}x "
      f"{ours['fraction_of_peak']:>15.0%}")
print(f"{ref['mode']:<6} {'pytorch(' + str(ref['threads']) + 'thr)':<14} {ref['tokens_per_s']:>14.0f} {ref['step_s']:>14.3f} {'1.00x':>8}")
print(f"       params {ours['params']:,}, trainable {ours['trainable']:,} (pytorch {ref['trainable']:,}); "
      f"step {ours['step_gflop']:.1f} GFLOP, llmft {ours['gflops']:.1f} GFLOP/s of {ours['gemm_peak_gflops']:.1f} measured GEMM peak")
PY
done
