#!/usr/bin/env bash
# Training throughput and peak memory, llmft against what a user would run instead, in one run, on the same
# ~40M-parameter Llama (random weights that transformers writes as a Hugging Face directory), the same LoRA (r 16,
# alpha 32, every linear layer) or full fine-tuning, the same batch (4 rows x 512 tokens) and step (token-mean
# cross-entropy, backward, clipping at 1.0, AdamW), 2 threads each:
#   llmft        bench/bench_train.cpp (Trainer::step, the llmft program's step, on rows of one 512-token document)
#   hf+peft      transformers' LlamaForCausalLM (SDPA) + PEFT get_peft_model, a plain training loop
#   eager        plain PyTorch 2.x: the block written out with SDPA (bench/train_torch.py)
#   compile      the same under torch.compile (its compile time is excluded; the warm-up step pays it)
# in float32 and in bfloat16 (base weights and activations bf16, LoRA matrices, norms and loss fp32). Prints a
# markdown table: tokens/s, peak resident memory, llmft's ratio to the fastest alternative, and the fraction of this
# machine's measured GEMM rate (same dtype, same threads) an llmft step reaches.
#   bench/train.sh [BUILD_DIR] [STEPS] [THREADS]      (needs scripts/deps.sh test; about 15 minutes on 2 cores)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
steps=${2:-4}
threads=${3:-2}
py=${LLMFT_PYTHON:-${LLMFT_VENV:-$root/.venv}/bin/python}
tok=${LLMFT_TEST_DATA:-$root/../shared/data}/models/stories260K-hf/tokenizer.json  # tokenizes llmft's documents
[[ -x $build/bench/bench_train ]] || cmake --build "$build" --target bench_train > /dev/null
model=$build/bench-model
[[ -f $model/model.safetensors ]] || "$py" "$root/bench/make_model.py" "$model" > /dev/null 2>&1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for dtype in float32 bfloat16; do
  for mode in lora full; do
    "$build/bench/bench_train" "$model" "$mode" "$steps" "$threads" "$dtype" "$tok" > "$work/$dtype-$mode-llmft.json"
    for impl in hf eager compile; do
      OMP_NUM_THREADS=$threads "$py" "$root/bench/train_torch.py" "$impl" "$model" "$mode" "$steps" "$threads" "$dtype" \
        2> "$work/$dtype-$mode-$impl.log" | tail -1 > "$work/$dtype-$mode-$impl.json" || true
    done
  done
done
"$py" - "$work" <<'PY'
import glob, json, os, sys
work = sys.argv[1]
names = {"hf": "hf+peft", "eager": "eager", "compile": "compile"}
print("| dtype | mode | llmft tok/s | hf+peft tok/s | eager tok/s | compile tok/s | llmft / fastest | peak MB llmft / hf+peft / eager / compile | llmft fraction of GEMM |")
print("|---|---|---:|---:|---:|---:|---:|---|---:|")
for dtype in ("float32", "bfloat16"):
    for mode in ("lora", "full"):
        def load(impl):
            try:
                with open(os.path.join(work, f"{dtype}-{mode}-{impl}.json")) as f:
                    return json.loads(f.read())
            except Exception:
                return None
        ours, others = load("llmft"), {i: load(i) for i in names}
        ok = {i: r for i, r in others.items() if r}
        fastest = max(ok.items(), key=lambda kv: kv[1]["tokens_per_s"]) if ok else None
        cell = lambda r: f"{r['tokens_per_s']:.0f}" if r else "failed"
        mem = " / ".join(f"{r['peak_rss_mb']:.0f}" if r else "-" for r in [ours] + list(others.values()))
        ratio = f"{ours['tokens_per_s'] / fastest[1]['tokens_per_s']:.2f}x ({names[fastest[0]]})" if fastest else "-"
        print(f"| {dtype} | {mode} | {cell(ours)} | {cell(others['hf'])} | {cell(others['eager'])} | "
              f"{cell(others['compile'])} | {ratio} | {mem} | {ours['fraction_of_peak']:.0%} |")
r = json.load(open(os.path.join(work, "float32-lora-llmft.json")))
print(f"\nmodel: {r['params']:,} parameters; LoRA trains {r['trainable']:,}. GEMM rate measured here: "
      f"{r['gemm_peak_gflops']:.0f} GFLOP/s fp32 (2048^2, {r['threads']} threads)")
for f in sorted(glob.glob(os.path.join(work, "*.log"))):
    if os.path.getsize(os.path.join(work, os.path.basename(f).replace(".log", ".json"))) == 0:
        print(f"{os.path.basename(f)}: failed:", open(f).read()[-400:])
PY
