"""Fixtures of the deploy/ tests: the project's paths and tools, and every Kustomize workload rendered once."""
import os
import shutil
import subprocess

import pytest
import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
K8S = os.path.join(ROOT, "deploy", "k8s")


def venv():
    return os.environ.get("LLMFT_VENV") or os.path.join(ROOT, ".venv")


def tool(name):
    path = os.path.join(venv(), "bin", name)
    if not os.access(path, os.X_OK):
        pytest.fail(f"no {path}: run scripts/deps.sh test")
    return path


def workload_dirs():
    """Every kustomization under deploy/k8s that renders objects (Components are parts of those)."""
    out = []
    for root, _, files in os.walk(K8S):
        if "kustomization.yaml" in files:
            with open(os.path.join(root, "kustomization.yaml"), encoding="utf-8") as f:
                if yaml.safe_load(f).get("kind", "Kustomization") == "Kustomization":
                    out.append(os.path.relpath(root, K8S))
    return sorted(out)


_rendered = {}


def render(rel):
    if rel not in _rendered:
        r = subprocess.run([tool("kustomize"), "build", os.path.join(K8S, rel)], capture_output=True, text=True)
        if r.returncode != 0:
            raise AssertionError(f"kustomize build deploy/k8s/{rel} failed:\n{r.stderr}")
        _rendered[rel] = [d for d in yaml.safe_load_all(r.stdout) if d]
    return _rendered[rel]


@pytest.fixture(scope="session")
def llmft_bin():
    path = os.environ.get("LLMFT_BIN") or os.path.join(ROOT, "build", "bin", "llmft")
    if not os.access(path, os.X_OK):
        pytest.fail(f"no llmft program at {path} (LLMFT_BIN)")
    return path


def can_unshare():
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        return False
    return subprocess.run(["unshare", "--net", "--mount", "--uts", "--fork", "true"],
                          capture_output=True).returncode == 0
