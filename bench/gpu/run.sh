#!/usr/bin/env bash
# The GPU measurements of llmft, as one script for a GPU machine (one H100 / H200, its own PyTorch with CUDA and its
# own transformers + PEFT, no network), run from the repository root with .gpu/ carried (bench/gpu/pack.sh makes it
# here). In about 8 minutes it:
#   1. builds llmft against that machine's PyTorch, CUDA and NCCL (the carried Debian packages for the rest);
#   2. runs the GPU tests (tests/cuda: varlen flash against the reference, 20 steps GPU against CPU, QLoRA, greedy
#      generation, every ZeRO stage over NCCL);
#   3. measures the bf16 matrix rate, each kernel of the GPU's op table against the reference it replaces (varlen
#      flash attention, fused AdamW), then llmft against transformers + PEFT on the same batches:
#      Llama-3.1-8B shape, LoRA r=16 on all linear layers, 2 rows of 4096 packed tokens, bf16, activation
#      checkpointing on both; DeepSeek-R1-Distill-Qwen-1.5B shape, full fine-tuning with AdamW, 4 rows of 4096;
#   4. trains an adapter on the GPU and has PEFT load it there, comparing logits;
# and writes OUT_DIR/results.json (every measurement) and OUT_DIR/results.md (the table bench/README.md takes).
#   bench/gpu/run.sh [OUT_DIR]     OUT_DIR: default $OUT (the device tool's), else build-gpu/results
# A check of the script itself where there is no GPU: DRY_RUN=1 BUILD=build bench/gpu/run.sh /tmp/dry runs every
# step on the CPU with small shapes and an existing build (the GPU tests then report SKIPPED).
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${1:-${OUT:-build-gpu/results}}
mkdir -p "$out"
root=$PWD/.gpu/sysroot
[[ -d $root ]] || { echo "run.sh: no .gpu/sysroot: run bench/gpu/pack.sh where the network is, and carry .gpu" >&2; exit 1; }
py=$(command -v python3)
site=$($py -c 'import torch, os; print(os.path.dirname(os.path.dirname(torch.__file__)))')
steps=${STEPS:-5}
dev=cuda seq=4096 llama=bench/gpu/llama-3.1-8b.json qwen=bench/gpu/r1-distill-qwen-1.5b.json
if [[ ${DRY_RUN:-0} == 1 ]]; then
  export BENCH_DEVICE=cpu
  dev=cpu seq=256 steps=2 llama=$out/llama-small.json qwen=$out/qwen2-small.json
  $py - "$out" <<'PY'
import json, sys
for name, src, small in (("llama-small", "llama-3.1-8b", dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=32, vocab_size=512)),
                         ("qwen2-small", "r1-distill-qwen-1.5b", dict(hidden_size=96, intermediate_size=192, num_hidden_layers=2, num_attention_heads=6, num_key_value_heads=2, vocab_size=512))):
    c = json.load(open(f"bench/gpu/{src}.json"))
    c.update(small)
    json.dump(c, open(f"{sys.argv[1]}/{name}.json", "w"))
PY
  echo "dry run: CPU, small shapes" > "$out/gpu.txt"
else
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
fi

# 1. Build (only what runs here).
build=${BUILD:-build-gpu}
mkdir -p .gpu/nccl/lib
ln -sfn "$site/nvidia/nccl/include" .gpu/nccl/include
ln -sf "$(ls "$site"/nvidia/nccl/lib/libnccl.so* | head -1)" .gpu/nccl/lib/libnccl.so
export PKG_CONFIG_LIBDIR=$root/usr/lib/x86_64-linux-gnu/pkgconfig:$root/usr/share/pkgconfig PKG_CONFIG_SYSROOT_DIR=$root
export NCCL_HOME=$PWD/.gpu/nccl
# The CUDA toolkit: nvcc on the PATH, else the usual places (the image's /usr/local/cuda, a toolkit root like the one
# scripts/deps.sh assembles); CUDA_HOME wins.
nvcc=${CUDA_HOME:+$CUDA_HOME/bin/nvcc}
for c in "$(command -v nvcc || true)" /usr/local/cuda/bin/nvcc "$PWD/.venv/cuda/bin/nvcc"; do
  [[ -n $nvcc && -x $nvcc ]] || nvcc=$c
done
[[ -x $nvcc ]] || { echo "run.sh: no CUDA compiler (nvcc) found; set CUDA_HOME" >&2; exit 1; }
cuda_root=$(dirname "$(dirname "$nvcc")")
t0=$SECONDS
[[ -n ${BUILD:-} ]] || LD_LIBRARY_PATH=$root/usr/lib/x86_64-linux-gnu cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$root/usr;$($py -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')" \
  -DPKG_CONFIG_EXECUTABLE="$root/usr/bin/pkgconf" -DLLMFT_VENV="$PWD/.gpu" -DLLMFT_PYTHON="$py" \
  -DCUDAToolkit_ROOT="$cuda_root" -DCUDA_TOOLKIT_ROOT_DIR="$cuda_root" -DCMAKE_CUDA_COMPILER="$nvcc" \
  -DLLMFT_ABI_CHECK=OFF -DTORCH_CUDA_ARCH_LIST=9.0 -DLLMFT_SHARED_DATA=/nonexistent \
  > "$out/build.log" 2>&1 &&
  LD_LIBRARY_PATH=$root/usr/lib/x86_64-linux-gnu cmake --build "$build" -j "$(nproc)" --target test_cuda bench_gpu \
  >> "$out/build.log" 2>&1 || { tail -40 "$out/build.log"; echo "run.sh: the build failed ($out/build.log)"; exit 1; }
echo "build: $((SECONDS - t0)) s"
export LD_LIBRARY_PATH=$root/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

# 2. The GPU tests.
$build/tests/test_cuda --gtest_output="json:$out/test_cuda.json" 2>&1 | tee "$out/test_cuda.txt"
tests_rc=${PIPESTATUS[0]}

# 3. Speed and memory, llmft and Hugging Face on the same batches, one after the other.
bench=$build/bench/bench_gpu
rate=$($bench matmul $dev | tee "$out/matmul.jsonl" | $py -c 'import json,sys; print(json.load(sys.stdin)["bf16_tflops"])')
echo "bf16 matrix rate: $rate TFLOP/s"
$bench kernels $dev | tee "$out/kernels.jsonl"   # each kernel of the GPU's op table against what it replaces
: > "$out/train.jsonl"
run() { "$@" 2> >(tail -5 >&2) | tail -1 | tee -a "$out/train.jsonl"; }
run $bench train "$llama" lora $seq 2 "$steps" $dev ckpt "$rate"
run $py bench/gpu/bench_hf.py train "$llama" lora $seq 2 "$steps" ckpt "$rate"
run $bench train "$qwen" full $seq 4 "$steps" $dev ckpt "$rate"
run $py bench/gpu/bench_hf.py train "$qwen" full $seq 4 "$steps" ckpt "$rate"

# 4. An adapter trained on the GPU, loaded by PEFT on this machine.
tmp=$(mktemp -d)
$py bench/random_llama.py "$tmp/llama-small" 512 4 8 2 1024 32000 &&
  $bench adapter "$tmp/llama-small" "$tmp/trained" $dev &&
  $py bench/gpu/bench_hf.py peft "$tmp/llama-small" "$tmp/trained" 2>/dev/null | tail -1 | tee "$out/peft.jsonl"
rm -rf "$tmp"

$py bench/gpu/summarize.py "$out" | tee "$out/results.md"
exit "$tests_rc"
