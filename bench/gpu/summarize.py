#!/usr/bin/env python3
"""bench/gpu/run.sh's last step: OUT_DIR's measurements as one results.json, and a Markdown table on stdout (the one
bench/README.md records), with the ratios the GPU issue sets goals for.
  summarize.py OUT_DIR"""
import json
import os
import sys

out = sys.argv[1]


def lines(name):
    path = os.path.join(out, name)
    if not os.path.exists(path):
        return []
    return [json.loads(x) for x in open(path) if x.strip().startswith("{")]


train = lines("train.jsonl")
tests = json.load(open(os.path.join(out, "test_cuda.json"))) if os.path.exists(os.path.join(out, "test_cuda.json")) else {}
skipped = sum(1 for suite in tests.get("testsuites", []) for t in suite.get("testsuite", []) if t.get("result") == "SKIPPED")
res = {"gpu": open(os.path.join(out, "gpu.txt")).read().strip() if os.path.exists(os.path.join(out, "gpu.txt")) else "",
       "matmul": lines("matmul.jsonl"), "kernels": lines("kernels.jsonl"), "train": train, "peft": lines("peft.jsonl"),
       "tests": {"tests": tests.get("tests"), "failures": tests.get("failures"), "skipped": skipped}}
json.dump(res, open(os.path.join(out, "results.json"), "w"), indent=1)

print(f"GPU: {res['gpu']}; bf16 matrix rate {res['matmul'][0]['bf16_tflops']:.0f} TFLOP/s" if res["matmul"] else "no matmul rate")
print(f"GPU tests: {res['tests']['tests']} run, {res['tests']['failures']} failed, {res['tests']['skipped']} skipped\n")
for k in res["kernels"]:
    a, w = k["attention"], k["adamw"]
    print(f"Kernels on {k['device']}: attention ({a['kernel']}, {a['tokens']} tokens, forward + backward) {a['kernel_ms']:.2f} ms "
          f"against the reference's {a['reference_ms']:.2f} ms ({a['speedup']:.1f}x); AdamW fused {w['fused_ms']:.2f} ms "
          f"against {w['tensor_ops_ms']:.2f} ms of tensor operations ({w['speedup']:.1f}x) over {w['values']:,} values\n")
print("| workload | engine | tokens/s | peak GB | MFU | speed ratio | memory ratio |")
print("|---|---|---:|---:|---:|---:|---:|")
for mode, goal in (("lora", "goals: >= 1.5x tokens/s, <= 0.6x memory, >= 45% MFU"), ("full", "goals: >= 1.3x, >= 40% MFU")):
    ours = [r for r in train if r.get("mode") == mode and r.get("engine") == "llmft"]
    theirs = [r for r in train if r.get("mode") == mode and r.get("engine") != "llmft"]
    for r in ours + theirs:
        ratio = mem = ""
        if r in ours and theirs:
            ratio = f"{r['tokens_per_s'] / theirs[0]['tokens_per_s']:.2f}x"
            if theirs[0]["peak_allocated_bytes"] > 0:  # 0: a CPU check of this script
                mem = f"{r['peak_allocated_bytes'] / theirs[0]['peak_allocated_bytes']:.2f}x"
        mfu = f"{100 * r['mfu']:.1f}%" if "mfu" in r else ""
        print(f"| {mode} ({goal}) | {r['engine']} | {r['tokens_per_s']:,.0f} | {r['peak_allocated_bytes'] / 1e9:.1f} | "
              f"{mfu} | {ratio} | {mem} |")
for p in res["peft"]:
    print(f"\nPEFT loads the GPU-trained adapter: logits within {p['relative_error']:.2e} of llmft's (tolerance "
          f"{p['tolerance']}), the adapter moves them by {p['adapter_moves_logits']:.2e}: {'ok' if p['ok'] else 'FAILED'}")
