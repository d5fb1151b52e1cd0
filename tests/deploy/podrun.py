"""Runs the pods of one workload as processes of this machine, the way a cluster would start their containers.

    unshare --net --mount --fork python3 podrun.py PLAN.json OUT_DIR

Inside its own network and mount namespaces (so ports and names are the workload's alone): loopback up, /etc/hosts
replaced by one that resolves every pod's DNS names (hostname, hostname.subdomain) to this machine, and each pod
started in its own UTS namespace with its hostname, its environment and its argv. Writes OUT_DIR/<pod>.log and
OUT_DIR/<pod>.rc; exits non-zero when a pod runs past the plan's timeout.

PLAN.json: {"timeout": seconds, "pods": [{"name", "hostname", "dns_names", "argv", "env"}]}
"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time


def main():
    plan = json.load(open(sys.argv[1], encoding="utf-8"))
    out = sys.argv[2]
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    hosts = tempfile.NamedTemporaryFile("w", suffix=".hosts", delete=False)
    hosts.write("127.0.0.1 localhost\n")
    for pod in plan["pods"]:
        hosts.write("127.0.0.1 " + " ".join(pod["dns_names"]) + "\n")
    hosts.close()
    subprocess.run(["mount", "--bind", hosts.name, "/etc/hosts"], check=True)
    os.unlink(hosts.name)  # the mount keeps the file alive as long as this namespace lasts
    procs = []
    for pod in plan["pods"]:
        log = open(os.path.join(out, pod["name"] + ".log"), "wb")
        argv = ["unshare", "--uts", "--", "sh", "-c", 'hostname "$0" && exec "$@"', pod["hostname"]] + pod["argv"]
        # Each pod its own process group: a pod past the deadline is killed whole (torchrun and its workers).
        procs.append((pod, subprocess.Popen(argv, env=pod["env"], stdout=log, stderr=subprocess.STDOUT,
                                            cwd=pod.get("cwd") or out, start_new_session=True)))
        log.close()
    deadline = time.time() + plan["timeout"]
    late = False
    for pod, p in procs:
        try:
            rc = p.wait(timeout=max(1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            rc, late = -9, True
        with open(os.path.join(out, pod["name"] + ".rc"), "w") as f:
            f.write(str(rc))
    return 3 if late else 0


if __name__ == "__main__":
    sys.exit(main())
