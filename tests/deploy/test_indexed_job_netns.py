"""The GKE two-node Indexed Job (deploy/k8s/gke/two-node), run for real across two network namespaces joined by a
veth pair: each "node" is one namespace with its own address and hostname, where the pod DNS names resolve as the
headless Service makes them resolve (/etc/netns/<ns>/hosts). Each pod runs exactly the container's command
(torchrun ... llmft train) with exactly the environment the manifest and the Job controller give it (PET_ variables,
the completion index, the NCCL ConfigMap). What differs from a cluster is the training configuration: the
ConfigMap's train.yaml is replaced by a small job that trains here in seconds, and the volumes are folders. The job
must train to the losses of one process with the same global batch."""
import json
import os
import shutil
import signal
import subprocess

import pytest
import yaml

from conftest import can_unshare, render, venv
from workloads import training_pods


def tiny_job(grad_accum):
    return {"model": {"hidden_size": 32, "intermediate_size": 64, "num_layers": 2, "num_heads": 2, "num_kv_heads": 1},
            "data": {"synthetic_records": 120, "seq_len": 64, "eval_count": 4},
            "train": {"max_steps": 3, "micro_batch_size": 1, "grad_accum": grad_accum, "mode": "full", "lr": 0.001},
            "generate": {"num_samples": 0}, "log": {"every": 1}, "dist": {"timeout_s": 120, "zero_stage": 2}}


def losses(out):
    path = os.path.join(out, "metrics.jsonl")
    return [json.loads(line)["loss"] for line in open(path) if '"loss"' in line and '"eval_loss"' not in line]


def sh(cmd):
    return subprocess.run(cmd, shell=True, capture_output=True, text=True)


def test_two_node_indexed_job_trains_across_two_network_namespaces(llmft_bin, tmp_path):
    if not can_unshare() or not shutil.which("ip"):
        pytest.skip("SKIPPED: needs root, iproute2 and unshare")
    docs = render("gke/two-node")
    (pods,) = training_pods(docs)
    assert len(pods) == 2
    nproc = os.cpu_count()  # torchrun's --nproc-per-node auto on a node without GPUs
    if nproc > 4:
        pytest.skip(f"SKIPPED: torchrun's auto would start {nproc} processes per node here (written for <= 4 CPUs)")
    world = 2 * nproc
    tag = f"lj{os.getpid() % 100000}"
    ns = [f"{tag}a", f"{tag}b"]
    veth = [f"{tag}x", f"{tag}y"]
    addr = ["10.231.7.1", "10.231.7.2"]
    netns_was_mounted = sh("mountpoint -q /run/netns").returncode == 0
    etc_netns_existed = os.path.isdir("/etc/netns")

    def cleanup():
        for n in ns:
            sh(f"ip netns del {n}")
            shutil.rmtree(f"/etc/netns/{n}", ignore_errors=True)
        sh(f"ip link del {veth[0]}")
        if not etc_netns_existed:
            shutil.rmtree("/etc/netns", ignore_errors=True)
        if not netns_was_mounted:
            sh('[ -z "$(ls -A /run/netns 2>/dev/null)" ] && mountpoint -q /run/netns && umount /run/netns')

    setup = (f"set -e; ip netns add {ns[0]}; ip netns add {ns[1]}; ip link add {veth[0]} type veth peer name {veth[1]};"
             f" ip link set {veth[0]} netns {ns[0]}; ip link set {veth[1]} netns {ns[1]};"
             f" ip -n {ns[0]} addr add {addr[0]}/24 dev {veth[0]}; ip -n {ns[1]} addr add {addr[1]}/24 dev {veth[1]};"
             f" for n in {ns[0]} {ns[1]}; do ip -n $n link set lo up; done;"
             f" ip -n {ns[0]} link set {veth[0]} up; ip -n {ns[1]} link set {veth[1]} up")
    r = sh(setup)
    if r.returncode != 0:
        cleanup()
        pytest.skip(f"SKIPPED: cannot create network namespaces here ({r.stderr.strip()})")
    try:
        # The headless Service's DNS: every pod's names, at that pod's node address.
        hosts = "127.0.0.1 localhost\n" + "".join(f"{addr[p.index]} {' '.join(p.dns_names)}\n" for p in pods)
        for n in ns:
            os.makedirs(f"/etc/netns/{n}", exist_ok=True)
            with open(f"/etc/netns/{n}/hosts", "w") as f:
                f.write(hosts)
        procs = []
        for p in pods:
            argv = p.argv()
            root = tmp_path / p.name
            root.mkdir()
            # Volumes become folders shared by both "nodes" (the bucket and the ReadWriteMany claims are shared
            # in the cluster too); the ConfigMap's train.yaml becomes the small job.
            for mount, volume in p.mounts().items():
                d = tmp_path / "volumes" / volume
                d.mkdir(parents=True, exist_ok=True)
                argv = [a.replace(mount + "/", str(d) + "/") for a in argv]
                if volume == "config":
                    (d / "train.yaml").write_text(yaml.safe_dump(tiny_job(1)))
            assert argv[0] == "torchrun" and "llmft" in argv, argv
            argv[argv.index("llmft")] = llmft_bin
            env = dict(p.env)
            env["PATH"] = os.path.join(venv(), "bin") + ":/usr/bin:/bin"
            env["OMP_NUM_THREADS"] = "1"
            with open(tmp_path / f"{p.name}.log", "w") as log:
                procs.append((p, subprocess.Popen(
                    ["ip", "netns", "exec", ns[p.index], "unshare", "--uts", "--", "sh", "-c",
                     'hostname "$0" && exec "$@"', p.hostname] + argv,
                    env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(root), start_new_session=True)))
        rcs = []
        for p, proc in procs:
            try:
                rcs.append(proc.wait(timeout=600))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # torchrun and its workers, so the namespace can go
                proc.wait()
                rcs.append(-9)
        logs = {p.name: (tmp_path / f"{p.name}.log").read_text(errors="replace") for p in pods}
    finally:
        cleanup()
    assert rcs == [0, 0], "\n".join(f"--- {k}\n{v[-4000:]}" for k, v in logs.items())
    node0 = logs[pods[0].name]
    assert f"rank 0 of {world} (node 0 of 2, local rank 0 of {nproc}; from torchrun)" in node0, node0[-3000:]
    assert "rendezvous at llmft-train-0.llmft-train:29500" in node0, node0[-3000:]
    # The manifest's output.dir override points into the artifacts volume of node 0 (rank 0 writes it).
    out = [a.split("=", 1)[1] for a in pods[0].argv() if a.startswith("output.dir=")][0]
    out = out.replace("/artifacts/", str(tmp_path / "volumes" / "artifacts") + "/")
    got = losses(out)
    # One process, the same global batch (gradient accumulation over `world` micro-batches).
    ref = tmp_path / "one"
    (tmp_path / "one.yaml").write_text(yaml.safe_dump(tiny_job(world)))
    r = subprocess.run([llmft_bin, "train", "--config", str(tmp_path / "one.yaml"), f"output.dir={ref}"],
                       capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    want = losses(str(ref))
    assert len(got) == len(want) == 3
    for g, w in zip(got, want):
        assert abs(g - w) <= 1e-5 * abs(w), (got, want)
