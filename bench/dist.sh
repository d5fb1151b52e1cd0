#!/usr/bin/env bash
# Distributed training on CPU at world size 2: (1) the step time of each ZeRO stage 0-3 for the same model and
# global batch, as overhead over stage 0; (2) bus bandwidth of llmft's Gloo communicator against raw c10d
# ProcessGroupGloo for all_reduce / reduce_scatter / all_gather, 1 KB to 256 MB.
#   bench/dist.sh [BUILD_DIR] [MAX_MB]      (needs a built llmft; both processes share this machine's cores)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
max_mb=${2:-256}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
world() {  # world N CMD...: runs CMD as ranks 0..N-1
  local n=$1; shift
  local port; port=$(free_port)
  local pids=()
  for ((r = 0; r < n; r++)); do
    RANK=$r WORLD_SIZE=$n LOCAL_RANK=$r LOCAL_WORLD_SIZE=$n MASTER_ADDR=127.0.0.1 MASTER_PORT=$port "$@" \
      > "$work/rank$r.log" 2>&1 & pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
}

# (1) A 20M-parameter Llama-architecture model (hidden 256, 4 layers, the Llama 3.1 vocabulary, tied), full
# fine-tuning, global batch of 2 rows x 256 tokens, 12 steps; step time from the tokens/s of the run.
echo "ZeRO stage step time, world size 2 (full fine-tuning, 2 x 256 tokens per step)"
printf '%-6s %12s %12s %10s %14s\n' stage "tokens/s" "ms/step" overhead "optimizer MB/rank"
base=""
for stage in 0 1 2 3; do
  world 2 "$build/bin/llmft" train model.hidden_size=256 model.intermediate_size=768 model.num_layers=4 \
    model.num_heads=4 model.num_kv_heads=2 data.synthetic_records=600 data.seq_len=256 data.eval_count=2 \
    train.mode=full train.max_steps=12 train.micro_batch_size=1 train.grad_accum=1 generate.num_samples=0 \
    log.every=100 dist.zero_stage=$stage output.dir="$work/out$stage"
  python3 - "$work/rank0.log" "$stage" "${base:-0}" <<'PY'
import re, sys
log, stage, base = open(sys.argv[1]).read(), sys.argv[2], float(sys.argv[3])
tps = float(re.search(r"done: .* ([\d.]+) tokens/s", log).group(1))
opt = float(re.search(r"holds ([\d.]+) MB of optimizer state", log).group(1))
ms = 2 * 256 / tps * 1000
over = f"{(ms / base - 1) * 100:+.1f}%" if base else "-"
print(f"{stage:<6} {tps:>12.0f} {ms:>12.1f} {over:>10} {opt:>14.1f}")
open(sys.argv[1] + ".ms", "w").write(str(ms))
PY
  [[ -n $base ]] || base=$(cat "$work/rank0.log.ms")
done

# (2) Bandwidth.
echo
echo "Collectives at world size 2: llmft's communicator vs raw c10d ProcessGroupGloo (fp32 buffers)"
world 2 "$build/bench/bench_comm" "$max_mb"
cat "$work/rank0.log" | grep -v '^\[llmft\]'
