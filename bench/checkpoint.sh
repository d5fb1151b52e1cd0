#!/usr/bin/env bash
# Checkpoint write and restore throughput, llmft against a plain copy of the same bytes on the same disk, in one run:
# full fine-tuning of the ~40M-parameter benchmark Llama (bench/make_model.py), so a checkpoint holds ~480 MB (fp32
# weights and two Adam moments); and the time from process start to the first resumed step, against a fresh start.
#   llmft save      Trainer::save: every file written, fsynced, crc32 in the manifest, folder renamed into place
#   llmft restore   Trainer::restore: manifest verified (sizes, crc32 of every byte), weights, moments and state loaded
#   copy            cp -r of the same folder, then sync (no checksum); page cache dropped first where we are root
#   bench/checkpoint.sh [BUILD_DIR]        (needs scripts/deps.sh test for the model; about a minute)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
py=${LLMFT_PYTHON:-${LLMFT_VENV:-$root/.venv}/bin/python}
data=${LLMFT_TEST_DATA:-$root/../shared/data}
tok=$data/models/stories260K-hf/tokenizer.json
[[ -x $build/bench/bench_checkpoint ]] || cmake --build "$build" --target bench_checkpoint > /dev/null
model=$build/bench-model
[[ -f $model/model.safetensors ]] || "$py" "$root/bench/make_model.py" "$model" > /dev/null 2>&1
work=$(mktemp -d "${TMPDIR:-/tmp}/llmft-ckpt-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
drop() { sync; echo 3 > /proc/sys/vm/drop_caches 2> /dev/null || true; }
save=$("$build/bench/bench_checkpoint" save "$model" "$tok" "$work/run")
ckpt=$("$py" -c 'import json,sys; print(json.loads(sys.argv[1])["checkpoint"])' "$save")
drop
t0=$(date +%s.%N); cp -r "$ckpt" "$work/copy"; sync; t1=$(date +%s.%N)
drop
resume=$("$build/bench/bench_checkpoint" resume "$model" "$tok" "$work/run")
drop
fresh=$("$build/bench/bench_checkpoint" fresh "$model" "$tok" "$work/fresh")
"$py" - "$save" "$resume" "$fresh" "$t0" "$t1" <<'PY'
import json, sys
s, r, f = (json.loads(x) for x in sys.argv[1:4])
copy_s = float(sys.argv[5]) - float(sys.argv[4])
mb = s["bytes"] / 1e6
print(f"checkpoint of {mb:.0f} MB (full fine-tuning, fp32 weights + Adam moments); page cache "
      f"{'dropped' if s['restore_cold_cache'] else 'warm'} before reads")
print("| operation | seconds | MB/s | vs plain copy |")
print("|---|---:|---:|---:|")
print(f"| llmft save (write, fsync, crc32, manifest, rename) | {s['save_s']:.2f} | {s['save_mb_s']:.0f} | {copy_s / s['save_s']:.2f}x |")
print(f"| llmft restore (verify crc32, load weights, moments, state) | {s['restore_s']:.2f} | {s['restore_mb_s']:.0f} | {copy_s / s['restore_s']:.2f}x |")
print(f"| cp -r + sync of the same folder | {copy_s:.2f} | {mb / copy_s:.0f} | 1.00x |")
print(f"\nprocess start to the end of the first step: resumed {r['seconds_to_first_step']:.2f} s, "
      f"fresh {f['seconds_to_first_step']:.2f} s")
PY
