"""Every workload under deploy/k8s renders with Kustomize and validates, strictly, against the schemas of what will
read it: Kubernetes 1.32's built-in kinds (kubernetes-validate), and the CRDs of Kubeflow Trainer v2.0.0 (TrainJob,
ClusterTrainingRuntime), JobSet v0.8.2 (the runtime's template), training-operator v1.8.1 (PyTorchJob) and Katib
v0.19.0 (Experiment, whose trial Job is a built-in kind). Unknown fields are errors, as kubectl's strict field
validation makes them. The llmft configurations the ConfigMaps carry load in llmft, and no secret is in a manifest."""
import copy
import os
import re
import subprocess

import jsonschema
import kubernetes_validate
import pytest
import yaml

from conftest import render, venv, workload_dirs

K8S_VERSION = "1.32.0"
BUILTIN = {"v1", "apps/v1", "batch/v1"}
WORKLOADS = workload_dirs()


def crd_dir():
    d = os.path.join(venv(), "share", "llmft-crds")
    if not os.path.isdir(d):
        pytest.fail(f"no CRDs in {d}: run scripts/deps.sh test")
    return d


def structural_to_jsonschema(s):
    """A CRD's structural OpenAPI v3 schema as a JSON schema that refuses unknown fields (kubeconform's strict
    conversion): objects with properties and no x-kubernetes-preserve-unknown-fields take no other keys,
    x-kubernetes-int-or-string takes either, nullable adds null."""
    if not isinstance(s, dict):
        return s
    out = {}
    for k, v in s.items():
        if k == "properties":
            out[k] = {p: structural_to_jsonschema(x) for p, x in v.items()}
        elif k in ("items", "additionalProperties") and isinstance(v, dict):
            out[k] = structural_to_jsonschema(v)
        elif k in ("allOf", "anyOf", "oneOf"):
            out[k] = [structural_to_jsonschema(x) for x in v]
        elif k == "not":
            out[k] = structural_to_jsonschema(v)
        elif k.startswith("x-kubernetes-") or k in ("nullable", "format"):
            continue  # formats (int32, date-time, ...) are advisory in the API server's validation too
        else:
            out[k] = v
    if s.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if s.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if (out.get("type") == "object" and "properties" in out and "additionalProperties" not in out
            and not s.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


_crds = {}


def crd_schema(api_version, kind):
    if not _crds:
        for name in os.listdir(crd_dir()):
            if not name.endswith(".yaml"):
                continue
            with open(os.path.join(crd_dir(), name), encoding="utf-8") as f:
                for crd in yaml.safe_load_all(f):
                    if not crd or crd.get("kind") != "CustomResourceDefinition":
                        continue
                    group = crd["spec"]["group"]
                    for v in crd["spec"]["versions"]:
                        schema = v.get("schema", {}).get("openAPIV3Schema", {})
                        _crds[(f"{group}/{v['name']}", crd["spec"]["names"]["kind"])] = schema
    if (api_version, kind) not in _crds:
        raise AssertionError(f"no CRD for {api_version} {kind} among {sorted(_crds)}")
    return _crds[(api_version, kind)]


def crd_errors(doc, schema=None):
    schema = structural_to_jsonschema(schema or crd_schema(doc["apiVersion"], doc["kind"]))
    # metadata is the API server's ObjectMeta (checked below as Kubernetes checks every object's metadata)
    if "metadata" in schema.get("properties", {}):
        schema["properties"]["metadata"] = {"type": "object"}
    v = jsonschema.Draft7Validator(schema)
    return ["/".join(str(p) for p in e.absolute_path) + ": " + e.message for e in v.iter_errors(doc)]


def check_metadata(doc):
    meta = doc.get("metadata", {})
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", meta.get("name", "")), f"bad name {meta.get('name')!r}"
    assert len(meta["name"]) <= 63, f"{meta['name']}: longer than a DNS label"
    for k in ("labels", "annotations"):
        for key, value in (meta.get(k) or {}).items():
            assert isinstance(value, str), f"{doc['kind']}/{meta['name']} {k}.{key} is not a string"


def validate(doc):
    """The errors of one rendered object against its schema ([] when it is valid)."""
    check_metadata(doc)
    if doc["apiVersion"] in BUILTIN:
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            return [f"{'/'.join(str(p) for p in e.path)}: {e.message}"]
        return []
    errors = crd_errors(doc)
    if doc["kind"] == "ClusterTrainingRuntime":
        # Its template is a JobSet's: check it against JobSet's own CRD too.
        jobset = crd_schema("jobset.x-k8s.io/v1alpha2", "JobSet")["properties"]["spec"]
        errors += ["template/spec/" + e for e in crd_errors(doc["spec"]["template"]["spec"], jobset)]
    if doc["kind"] == "Experiment":
        # Katib's CRD keeps the spec open (x-kubernetes-preserve-unknown-fields): the trial's Job is checked as the
        # built-in kind it is, with Katib's ${trialParameters.*} / ${trialSpec.*} placeholders filled in.
        tt = doc["spec"]["trialTemplate"]
        spec_text = yaml.safe_dump(tt["trialSpec"])
        # Katib fills only ${trialParameters.X} inside the trial's spec; anything else stays as written.
        for ref in re.findall(r"\$\{([^}]*)\}", spec_text):
            assert ref.startswith("trialParameters."), f"${{{ref}}} in trialSpec is not filled in by Katib"
        declared = {p["name"] for p in tt["trialParameters"]}
        used = set(re.findall(r"\$\{trialParameters\.([^}]+)\}", spec_text))
        assert used <= declared, f"trial parameters used but not declared: {used - declared}"
        params = {p["name"] for p in doc["spec"]["parameters"]}
        for p in tt["trialParameters"]:  # a search parameter, or the trial's own metadata
            assert p["reference"] in params or re.fullmatch(
                r"\$\{trialSpec\.(Name|Namespace|Kind|APIVersion|(Labels|Annotations)\[[^]]+\])\}", p["reference"]), p
        trial = yaml.safe_load(re.sub(r"\$\{trialParameters\.[^}]+\}", "1", spec_text))
        trial.setdefault("metadata", {})["name"] = "trial"
        names = [c["name"] for c in trial["spec"]["template"]["spec"]["containers"]]
        assert tt["primaryContainerName"] in names
        errors += ["trialSpec: " + e for e in validate(trial)]
    return errors


@pytest.mark.parametrize("workload", WORKLOADS)
def test_workload_validates(workload):
    docs = render(workload)
    assert docs, f"{workload} renders nothing"
    problems = []
    for d in docs:
        problems += [f"{d['kind']}/{d['metadata'].get('name')}: {e}" for e in validate(d)]
    assert not problems, f"deploy/k8s/{workload}:\n" + "\n".join(problems)


def test_every_launcher_is_covered():
    kinds = {(d["apiVersion"], d["kind"]) for w in WORKLOADS for d in render(w)}
    for want in [("batch/v1", "Job"), ("v1", "Service"), ("trainer.kubeflow.org/v1alpha1", "TrainJob"),
                 ("trainer.kubeflow.org/v1alpha1", "ClusterTrainingRuntime"), ("kubeflow.org/v1", "PyTorchJob"),
                 ("kubeflow.org/v1beta1", "Experiment"), ("apps/v1", "Deployment"),
                 ("v1", "PersistentVolumeClaim")]:
        assert want in kinds, f"no {want} among the rendered workloads"


def test_validation_catches_a_misspelt_field_and_a_wrong_type():
    """The checks above can fail: a typo in a built-in kind, and in each custom resource, is reported."""
    docs = {d["kind"]: d for w in WORKLOADS for d in render(w)}
    job = copy.deepcopy(docs["Job"])
    job["spec"]["template"]["spec"]["containers"][0]["envv"] = []
    assert validate(job)
    pj = copy.deepcopy(docs["PyTorchJob"])
    pj["spec"]["pytorchReplicaSpecs"]["Worker"]["replica"] = 1
    assert any("replica" in e for e in validate(pj))
    tj = copy.deepcopy(docs["TrainJob"])
    tj["spec"]["trainer"]["numNodes"] = "two"
    assert any("numNodes" in e for e in validate(tj))
    rt = copy.deepcopy(docs["ClusterTrainingRuntime"])
    rt["spec"]["template"]["spec"]["replicatedJobs"][0]["replica"] = 2
    assert validate(rt)


def test_no_secret_is_written_in_a_manifest():
    token = re.compile(r"hf_[A-Za-z0-9]{30,}")
    for w in WORKLOADS:
        docs = render(w)
        assert not any(d["kind"] == "Secret" for d in docs), f"{w} carries a Secret object"
        text = yaml.safe_dump_all(docs)
        assert not token.search(text), f"{w} has an access token in it"
        for d in docs:
            for c in re.findall(r"name: (HF_TOKEN|HUGGING_FACE_HUB_TOKEN)\n(\s+)(\w+)", yaml.safe_dump(d)):
                assert c[2] == "valueFrom", f"{w}: {c[0]} is set as a literal, not from a Secret"


def test_the_configurations_load_in_llmft(llmft_bin, tmp_path):
    """Each llmft configuration in the ConfigMaps has only known keys with valid values (llmft's own loader)."""
    seen = set()
    for w in WORKLOADS:
        for d in render(w):
            if d["kind"] != "ConfigMap" or d["metadata"]["name"] != "llmft-config":
                continue
            for key, text in d["data"].items():
                if key in seen:
                    continue
                seen.add(key)
                path = tmp_path / key
                path.write_text(text)
                r = subprocess.run([llmft_bin, "world", "--config", str(path)], capture_output=True, text=True,
                                   env={"PATH": os.environ.get("PATH", "")})
                assert r.returncode == 0, f"common/{key}: {r.stderr}"
    assert {"train.yaml", "prep.yaml", "generate.yaml", "r1-distill.yaml"} <= seen
    # `llmft generate` needs prompts: the generation Job has no --prompt, so they are in its configuration.
    generate = yaml.safe_load((tmp_path / "generate.yaml").read_text())
    assert generate["generate"]["prompts"], "common/generate.yaml has no generate.prompts"
