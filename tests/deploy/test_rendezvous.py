"""Each training workload's pods, started as the cluster would start them, find the world the manifest means.

For every rendered workload (deploy/k8s), workloads.py derives each pod's environment as its controller would set
it (batch Job, PyTorchJob, TrainJob; the pod's hostname and DNS names too). The pods' commands then run for real:
torchrun where the manifest starts torchrun, with `llmft train|generate|prep` replaced by `llmft world` (same
configuration file, same overrides), all pods at once in a private network namespace where the pods' DNS names
resolve (podrun.py). llmft's rendezvous then reports every process's rank, node and master address, which must form
one world: nodes x processes ranks, each once, node ranks from the controller, the master the manifest names.

On this machine torchrun's `auto` means one process per CPU (no GPU), so a pod runs os.cpu_count() processes where
a GPU node would run one per GPU; an explicit count (PyTorchJob's nprocPerNode: 8) runs as written."""
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, can_unshare, render, venv, workload_dirs
from workloads import training_pods

HERE = os.path.dirname(os.path.abspath(__file__))
MAX_AUTO = 4  # above this many CPUs, `auto` is run as this many processes per pod


def world_pods(docs, out, llmft_bin):
    """The workloads' pods, with each container's llmft job replaced by `llmft world` and its ConfigMap volumes
    written under `out`."""
    plans = []
    configmaps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
    for pods in training_pods(docs):
        plan = []
        for pod in pods:
            argv = pod.argv()
            assert "llmft" in argv, f"{pod.name}: no llmft in {argv}"
            i = argv.index("llmft")
            argv[i] = llmft_bin
            assert argv[i + 1] in ("train", "generate", "prep"), argv
            argv[i + 1] = "world"
            if "--prompt" in argv:
                argv = argv[:argv.index("--prompt")]
            # ConfigMap volumes: the files the container would see at their mount path.
            volumes = {}
            for spec in pod.volumes:
                if "configMap" in spec:
                    d = os.path.join(out, "volumes", pod.name, spec["name"])
                    os.makedirs(d, exist_ok=True)
                    for k, v in configmaps[spec["configMap"]["name"]].items():
                        with open(os.path.join(d, k), "w", encoding="utf-8") as f:
                            f.write(v)
                    volumes[spec["name"]] = d
            for mount, name in pod.mounts().items():
                if name in volumes:
                    argv = [a.replace(mount + "/", volumes[name] + "/") for a in argv]
            env = dict(pod.env)
            env["PATH"] = os.path.join(venv(), "bin") + ":" + os.path.dirname(llmft_bin) + ":/usr/bin:/bin"
            env["OMP_NUM_THREADS"] = "1"
            if os.cpu_count() > MAX_AUTO:  # torchrun's auto would start one process per CPU: a machine's worth
                argv = [a.replace("=auto", f"={MAX_AUTO}") if a.startswith("--nproc") else a for a in argv]
                if env.get("PET_NPROC_PER_NODE") == "auto":
                    env["PET_NPROC_PER_NODE"] = str(MAX_AUTO)
            plan.append({"name": pod.name, "hostname": pod.hostname, "dns_names": pod.dns_names, "argv": argv,
                         "env": env, "pod": pod})
        plans.append(plan)
    return plans


def run_pods(plan, out, timeout=180):
    path = os.path.join(out, "plan.json")
    with open(path, "w") as f:
        json.dump({"timeout": timeout, "pods": [{k: v for k, v in p.items() if k != "pod"} for p in plan]}, f)
    r = subprocess.run(["unshare", "--net", "--mount", "--fork", sys.executable, os.path.join(HERE, "podrun.py"),
                        path, out], capture_output=True, text=True, timeout=timeout + 60)
    logs = {p["name"]: open(os.path.join(out, p["name"] + ".log"), errors="replace").read() for p in plan}
    rcs = {p["name"]: int(open(os.path.join(out, p["name"] + ".rc")).read()) for p in plan}
    assert r.returncode == 0, f"pods ran past {timeout} s:\n{r.stderr}\n" + "\n".join(
        f"--- {k}\n{v[-3000:]}" for k, v in logs.items())
    return logs, rcs


def worlds_of(log):
    return [json.loads(line) for line in log.splitlines() if line.startswith('{"rank"')]


def expected_nproc(entry):
    """The processes one pod runs: torchrun's --nproc-per-node, else PET_NPROC_PER_NODE; auto is one per CPU."""
    argv, env = entry["argv"], entry["env"]
    if argv[0] != "torchrun":
        return 1
    n = env.get("PET_NPROC_PER_NODE", "1")
    for a in argv:
        if a.startswith("--nproc-per-node=") or a.startswith("--nproc_per_node="):
            n = a.split("=", 1)[1]
    return os.cpu_count() if n == "auto" else int(n)


CASES = [w for w in workload_dirs() if any(d["kind"] in ("Job", "PyTorchJob", "TrainJob") for d in render(w))]


@pytest.mark.parametrize("workload", CASES)
def test_pods_form_the_world_the_manifest_means(workload, llmft_bin, tmp_path):
    if not can_unshare():
        pytest.skip("SKIPPED: needs root and unshare (network, mount and UTS namespaces)")
    docs = render(workload)
    for plan in world_pods(docs, str(tmp_path), llmft_bin):
        logs, rcs = run_pods(plan, str(tmp_path))
        for name, rc in rcs.items():
            assert rc == 0, f"{workload} pod {name} exited {rc}:\n{logs[name][-4000:]}"
        pods = [p["pod"] for p in plan]
        nproc = [expected_nproc(e) for e in plan]
        total = sum(nproc)
        seen = []
        for p, n in zip(pods, nproc):
            worlds = worlds_of(logs[p.name])
            assert len(worlds) == n, f"{p.name}: {n} processes expected, {len(worlds)} reported:\n{logs[p.name]}"
            assert sorted(w["local_rank"] for w in worlds) == list(range(n)), worlds
            node_ranks = {w["node_rank"] for w in worlds}
            assert len(node_ranks) == 1, f"{p.name}: one node rank expected, got {node_ranks}"
            if "PET_RDZV_ENDPOINT" not in p.env:  # static rendezvous: the controller's node rank
                assert node_ranks == {p.index}, f"{p.name}: node rank {node_ranks}, controller gave {p.index}"
                master = p.env.get("PET_MASTER_ADDR") or p.env.get("MASTER_ADDR")
                if master and n * len(pods) > 1:
                    assert {w["master_addr"] for w in worlds} == {master}, worlds
            for w in worlds:
                assert w["world_size"] == total and w["nodes"] == len(pods), (p.name, w)
                assert w["local_world_size"] == n
                if total > 1:
                    assert w["source"] == "torchrun", w
            seen += [w["rank"] for w in worlds]
        assert sorted(seen) == list(range(total)), f"{workload}: ranks {sorted(seen)}"
