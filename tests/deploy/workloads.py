"""The pods a rendered llmft manifest becomes, and the environment each pod's container starts with.

What a controller adds is written here from its source, at the versions the CRDs come from (scripts/deps.sh):
  batch/v1 Job (Kubernetes): completions pods; an Indexed Job's pod i has the annotation
      batch.kubernetes.io/job-completion-index=i, the variable JOB_COMPLETION_INDEX=i, and hostname <job>-<i>
      (under spec.subdomain when set).
  PyTorchJob (training-operator v1.8.1, pkg/controller.v1/pytorch/{envvar,master,elastic}.go): pods
      <job>-master-0 and <job>-worker-<i>, each reachable by that name (one Service per pod); with a Master:
      MASTER_ADDR / PET_MASTER_ADDR=<job>-master-0, MASTER_PORT / PET_MASTER_PORT (the Master's pytorchjob-port),
      WORLD_SIZE=pods x nprocPerNode, RANK=PET_NODE_RANK=the pod's index (workers from 1); PET_NPROC_PER_NODE
      (nprocPerNode, defaulted to auto),
      PET_NNODES=pods; with an elasticPolicy instead: PET_RDZV_BACKEND, PET_RDZV_ENDPOINT=<job>-worker-0:<port>,
      PET_NNODES=min:max, PET_MAX_RESTARTS.
  TrainJob on a ClusterTrainingRuntime (Kubeflow Trainer v2.0.0, pkg/runtime/framework/plugins/torch/torch.go):
      the JobSet's pods <trainjob>-node-0-<i> under the subdomain <trainjob>; the trainer container gets the
      TrainJob's env, PET_NNODES=numNodes, PET_NPROC_PER_NODE (TrainJob's, else the runtime's numProcPerNode, else
      auto), PET_NODE_RANK=the completion index, PET_MASTER_ADDR=<trainjob>-node-0-0.<trainjob>,
      PET_MASTER_PORT=29500.
Then Kubernetes expands $(VAR) in command and args from the container's environment.
"""
import re


class Pod:
    def __init__(self, workload, name, hostname, subdomain, container, env, index, volumes):
        self.workload, self.name, self.hostname, self.subdomain = workload, name, hostname, subdomain
        self.container, self.env, self.index, self.volumes = container, env, index, volumes

    @property
    def dns_names(self):
        return [self.hostname] + ([f"{self.hostname}.{self.subdomain}"] if self.subdomain else [])

    def argv(self):
        c = self.container
        return [expand(a, self.env) for a in (c.get("command") or []) + (c.get("args") or [])]

    def mounts(self):
        return {m["mountPath"]: m["name"] for m in self.container.get("volumeMounts", [])}


def expand(text, env):
    """Kubernetes' $(VAR) expansion: a defined variable is replaced, $$ escapes, anything else stays as written."""
    def sub(m):
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)", sub, text)


def by_kind(docs, kind):
    return [d for d in docs if d.get("kind") == kind]


def container_env(container, docs, annotations, secrets):
    """The container's variables as written (value, valueFrom of a field, ConfigMap or Secret; envFrom ConfigMap)."""
    env = {}
    configmaps = {d["metadata"]["name"]: d.get("data", {}) for d in by_kind(docs, "ConfigMap")}
    for src in container.get("envFrom", []):
        if "configMapRef" in src:
            name = src["configMapRef"]["name"]
            if name not in configmaps:
                raise AssertionError(f"envFrom ConfigMap {name} is not among the rendered objects")
            env.update(configmaps[name])
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = expand(str(e["value"]), env)
            continue
        vf = e.get("valueFrom", {})
        if "fieldRef" in vf:
            path = vf["fieldRef"]["fieldPath"]
            m = re.fullmatch(r"metadata\.annotations\['([^']+)'\]", path)
            if not m or m.group(1) not in annotations:
                raise AssertionError(f"{e['name']}: field {path} has no value in this pod")
            env[e["name"]] = annotations[m.group(1)]
        elif "secretKeyRef" in vf:
            ref = vf["secretKeyRef"]
            if ref["name"] in secrets:
                env[e["name"]] = secrets[ref["name"]]
            elif not ref.get("optional"):
                raise AssertionError(f"{e['name']}: Secret {ref['name']} is required and not given")
        elif "configMapKeyRef" in vf:
            ref = vf["configMapKeyRef"]
            env[e["name"]] = configmaps[ref["name"]][ref["key"]]
        else:
            raise AssertionError(f"{e['name']}: unsupported valueFrom {vf}")
    return env


def job_pods(job, docs, secrets):
    spec, tmpl = job["spec"], job["spec"]["template"]
    name = job["metadata"]["name"]
    indexed = spec.get("completionMode") == "Indexed"
    n = spec.get("completions", 1)
    pods = []
    for i in range(n):
        annotations = dict(tmpl.get("metadata", {}).get("annotations", {}))
        if indexed:
            annotations["batch.kubernetes.io/job-completion-index"] = str(i)
        c = tmpl["spec"]["containers"][0]
        env = container_env(c, docs, annotations, secrets)
        if indexed:
            env["JOB_COMPLETION_INDEX"] = str(i)
        hostname = f"{name}-{i}" if indexed else f"{name}-pod{i}"
        pods.append(Pod(name, hostname, hostname, tmpl["spec"].get("subdomain"), c, env, i,
                        tmpl["spec"].get("volumes", [])))
    return pods


def pytorchjob_pods(job, docs, secrets):
    spec, name = job["spec"], job["metadata"]["name"]
    specs = spec["pytorchReplicaSpecs"]
    total = sum(r.get("replicas", 1) for r in specs.values())
    nproc = spec.get("nprocPerNode")
    elastic = spec.get("elasticPolicy")
    if nproc is None and (not elastic or elastic.get("nProcPerNode") is None):
        nproc = "auto"  # the operator's defaulting (pytorch_defaults.go, setDefaultNprocPerNode)
    nproc_int = int(nproc) if nproc and nproc.isdigit() else 1

    def port(role):
        for c in specs[role]["template"]["spec"]["containers"]:
            if c["name"] == "pytorch":
                for p in c.get("ports", []):
                    if p.get("name") == "pytorchjob-port":
                        return p["containerPort"]
        raise AssertionError(f"{name}: {role} has no container 'pytorch' with a port named pytorchjob-port")

    pods = []
    for role in ("Master", "Worker"):
        if role not in specs:
            continue
        for i in range(specs[role].get("replicas", 1)):
            tmpl = specs[role]["template"]
            c = next(c for c in tmpl["spec"]["containers"] if c["name"] == "pytorch")
            env = container_env(c, docs, dict(tmpl.get("metadata", {}).get("annotations", {})), secrets)
            env["PYTHONUNBUFFERED"] = "1"
            rank = i + (1 if role == "Worker" else 0)
            if "Master" in specs:
                env.update(MASTER_PORT=str(port("Master")), PET_MASTER_PORT=str(port("Master")),
                           MASTER_ADDR=f"{name}-master-0", PET_MASTER_ADDR=f"{name}-master-0",
                           WORLD_SIZE=str(total * nproc_int), RANK=str(rank), PET_NODE_RANK=str(rank))
            if nproc is not None:
                env["PET_NPROC_PER_NODE"] = nproc
            if elastic:
                if elastic.get("maxRestarts") is not None:
                    env["PET_MAX_RESTARTS"] = str(elastic["maxRestarts"])
                env["PET_RDZV_BACKEND"] = elastic.get("rdzvBackend", "c10d")
                env["PET_RDZV_ENDPOINT"] = f"{elastic.get('rdzvHost', name + '-worker-0')}:" \
                                           f"{elastic.get('rdzvPort', port('Worker'))}"
                if "rdzvId" in elastic:
                    env["PET_RDZV_ID"] = elastic["rdzvId"]
                if elastic.get("minReplicas") is None and elastic.get("maxReplicas") is None:
                    env["PET_NNODES"] = str(specs["Worker"]["replicas"])
                else:
                    env["PET_NNODES"] = f"{elastic['minReplicas']}:{elastic['maxReplicas']}"
            else:
                env["PET_NNODES"] = str(total)
            pod = f"{name}-{role.lower()}-{i}"
            pods.append(Pod(name, pod, pod, None, c, env, rank, tmpl["spec"].get("volumes", [])))
    return pods


def trainjob_pods(tj, docs, secrets):
    name = tj["metadata"]["name"]
    ref = tj["spec"]["runtimeRef"]
    runtimes = {d["metadata"]["name"]: d for d in by_kind(docs, ref.get("kind", "ClusterTrainingRuntime"))}
    if ref["name"] not in runtimes:
        raise AssertionError(f"TrainJob {name}: runtime {ref['name']} is not among the rendered objects")
    rt = runtimes[ref["name"]]["spec"]
    trainer = tj["spec"].get("trainer", {})
    nodes = trainer.get("numNodes", rt["mlPolicy"].get("numNodes", 1))
    nproc = str(trainer.get("numProcPerNode", rt["mlPolicy"].get("torch", {}).get("numProcPerNode", "auto")))
    rjob = next(r for r in rt["template"]["spec"]["replicatedJobs"]
                if r["template"].get("metadata", {}).get("labels", {}).get(
                    "trainer.kubeflow.org/trainjob-ancestor-step") == "trainer")
    c = next(c for c in rjob["template"]["spec"]["template"]["spec"]["containers"] if c["name"] == "node")
    c = dict(c)
    for k in ("command", "args", "image"):
        if k in trainer:
            c[k] = trainer[k]
    pods = []
    for i in range(nodes):
        annotations = {"batch.kubernetes.io/job-completion-index": str(i)}
        env = container_env(c, docs, annotations, secrets)
        for e in trainer.get("env", []):
            env[e["name"]] = e["value"]
        env.update(PET_NNODES=str(nodes), PET_NPROC_PER_NODE=nproc, PET_NODE_RANK=str(i),
                   PET_MASTER_ADDR=f"{name}-{rjob['name']}-0-0.{name}", PET_MASTER_PORT="29500",
                   JOB_COMPLETION_INDEX=str(i))
        hostname = f"{name}-{rjob['name']}-0-{i}"
        pods.append(Pod(name, hostname, hostname, name, c, env, i,
                        rjob["template"]["spec"]["template"]["spec"].get("volumes", [])))
    return pods


def training_pods(docs, secrets=None):
    """Every training workload in `docs` (one rendered kustomization) as its list of pods."""
    secrets = secrets or {}
    out = []
    for d in by_kind(docs, "Job"):
        out.append(job_pods(d, docs, secrets))
    for d in by_kind(docs, "PyTorchJob"):
        out.append(pytorchjob_pods(d, docs, secrets))
    for d in by_kind(docs, "TrainJob"):
        out.append(trainjob_pods(d, docs, secrets))
    return out
