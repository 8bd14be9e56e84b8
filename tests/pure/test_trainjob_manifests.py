"""Multi-node training through Kubeflow Trainer, offline: TF_CONFIG from the JobSet's
hostnames, the TrainJob and the ClusterTrainingRuntime validated against Trainer v2.3.0's
CRD schemas (tests/support/fixtures/trainer_crds), and the launching step's create / log /
wait / copy against a fake Kubernetes API (the only thing mocked here: no cluster ran it).
"""

from __future__ import annotations

import copy
import gzip
import json
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jsonschema
import pytest
import yaml

from planets_mlops.errors import InvalidParameterError
from planets_mlops.knobs import TrainParams
from planets_mlops.multiworker import (
    ENV_JOB_INDEX,
    ENV_JOBSET,
    ENV_POD_INDEX,
    ENV_WORKERS,
    QUEUE_LABEL,
    RUNTIME_NAME,
    TrainJobFailed,
    TrainJobOptions,
    chief_selector,
    run_trainjob,
    tf_config,
    tf_config_from_env,
    trainjob_manifest,
    trainjob_state,
    worker_hostnames,
)

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "tests" / "support" / "fixtures" / "trainer_crds"
RUNTIME_DIR = ROOT / "kustomize" / "trainer-multiworker"


def strict(schema: Any) -> Any:
    """The schema with unknown fields refused wherever the CRD lists an object's fields."""
    schema = copy.deepcopy(schema)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if (
                node.get("type") == "object"
                and "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


def validate(obj: dict[str, Any], kind: str) -> None:
    with gzip.open(CRDS / f"{kind}.v1alpha1.schema.json.gz") as handle:
        schema = strict(json.load(handle))
    jsonschema.validate(obj, schema)


# ---------------------------------------------------------------- TF_CONFIG, a pure function
def test_tf_config_lists_every_worker_and_names_this_one():
    assert tf_config(["a", "b", "c"], 2, port=2222) == {
        "cluster": {"worker": ["a:2222", "b:2222", "c:2222"]},
        "task": {"type": "worker", "index": 2},
    }


def test_hostnames_are_jobsets_stable_pod_names():
    assert worker_hostnames("train-abc", 2) == [
        "train-abc-node-0-0.train-abc",
        "train-abc-node-0-1.train-abc",
    ]


def test_tf_config_from_the_runtimes_variables():
    env = {ENV_JOBSET: "train-abc", ENV_JOB_INDEX: "0", ENV_POD_INDEX: "1", ENV_WORKERS: "2"}
    assert tf_config_from_env(env) == {
        "cluster": {"worker": ["train-abc-node-0-0.train-abc:12345", "train-abc-node-0-1.train-abc:12345"]},
        "task": {"type": "worker", "index": 1},
    }


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({ENV_POD_INDEX: "2"}, "index=2"),
        ({ENV_WORKERS: "two"}, "PLANETS_NUM_WORKERS='two'"),
        ({ENV_JOBSET: ""}, "PLANETS_JOBSET_NAME"),
        ({ENV_WORKERS: "0"}, "workers=0"),
    ],
)
def test_bad_runtime_variables_name_the_variable(change, fragment):
    env = {ENV_JOBSET: "j", ENV_JOB_INDEX: "0", ENV_POD_INDEX: "0", ENV_WORKERS: "2", **change}
    with pytest.raises(InvalidParameterError, match=fragment):
        tf_config_from_env(env)


# ---------------------------------------------------------------- manifests against the CRDs
def test_trainjob_validates_against_the_trainer_crd():
    options = TrainJobOptions(workers=3, image="ghcr.io/x/train-gpu:1", queue="team-a", gpus=1)
    job = trainjob_manifest("train-abc", "/mnt/shared/train-abc", TrainParams(epochs=3), options)
    validate(job, "TrainJob")
    assert job["metadata"]["labels"][QUEUE_LABEL] == "team-a"
    assert job["spec"]["activeDeadlineSeconds"] == 3600
    assert job["spec"]["runtimeRef"]["name"] == RUNTIME_NAME
    assert job["spec"]["trainer"]["numNodes"] == 3
    env = {item["name"]: item["value"] for item in job["spec"]["trainer"]["env"]}
    assert json.loads(env["PLANETS_TRAIN_PARAMS"])["epochs"] == 3
    assert job["spec"]["trainer"]["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == "1"


def test_a_field_the_crd_lacks_fails_validation():
    job = trainjob_manifest("t", "/mnt/shared/t", TrainParams(), TrainJobOptions())
    job["spec"]["trainer"]["replicas"] = 2  # TFJob's word, not TrainJob's
    with pytest.raises(jsonschema.ValidationError, match="replicas"):
        validate(job, "TrainJob")


def test_options_refuse_what_cannot_run():
    with pytest.raises(InvalidParameterError, match="workers=0"):
        TrainJobOptions(workers=0)
    with pytest.raises(InvalidParameterError, match="deadline_seconds=0"):
        TrainJobOptions(deadline_seconds=0)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_the_shipped_runtime_hydrates_and_validates():
    out = subprocess.run(
        ["kubectl", "kustomize", str(RUNTIME_DIR)], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    objects = {doc["kind"]: doc for doc in yaml.safe_load_all(out) if doc}
    runtime = objects["ClusterTrainingRuntime"]
    validate(runtime, "ClusterTrainingRuntime")
    assert runtime["metadata"]["name"] == RUNTIME_NAME
    assert runtime["spec"]["template"]["spec"]["ttlSecondsAfterFinished"] == 86400
    container = runtime["spec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"][
        "spec"
    ]["containers"][0]
    assert container["command"] == ["python", "-m", "planets_mlops.multiworker", "worker"]
    assert {e["name"] for e in container["env"]} == {ENV_JOBSET, ENV_JOB_INDEX, ENV_POD_INDEX}
    assert objects["PersistentVolumeClaim"]["spec"]["accessModes"] == ["ReadWriteMany"]


# ---------------------------------------------------------------- the launching step, fake API
class FakeKubernetes:
    """Stands in for the Kubernetes API only (CustomObjectsApi and CoreV1Api calls used)."""

    def __init__(self, shared: Path, ends: str = "Complete") -> None:
        self.shared, self.ends, self.created, self.reads = shared, ends, None, 0

    def create_namespaced_custom_object(self, group, version, namespace, plural, body):
        assert (group, version, plural) == ("trainer.kubeflow.org", "v1alpha1", "trainjobs")
        self.created = body
        # What the chief would write on the shared volume.
        run_dir = Path(body["spec"]["trainer"]["env"][1]["value"])
        assert (run_dir / "prepared" / "manifest.json").is_file()
        if self.ends == "Complete":
            (run_dir / "model").mkdir()
            (run_dir / "model" / "model.onnx").write_text("onnx")

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        self.reads += 1
        if self.reads < 2:
            return {"status": {"conditions": [{"type": "Created", "status": "True"}]}}
        return {
            "status": {"conditions": [{"type": self.ends, "status": "True", "reason": "DeadlineExceeded"}]}
        }

    def list_namespaced_pod(self, namespace, label_selector):
        assert label_selector == chief_selector(self.created["metadata"]["name"])
        pod = SimpleNamespace(metadata=SimpleNamespace(name="chief"), status=SimpleNamespace(phase="Running"))
        return SimpleNamespace(items=[pod])

    def read_namespaced_pod_log(self, name, namespace, container, follow, _preload_content):
        return SimpleNamespace(stream=lambda: iter([b"progress: epoch 1 of 1\n"]))


def test_run_trainjob_creates_streams_waits_and_returns_the_chiefs_model(tmp_path):
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    (prepared / "manifest.json").write_text("{}")
    fake, lines = FakeKubernetes(tmp_path / "shared"), []
    job = run_trainjob(
        fake, fake, prepared, tmp_path / "model", TrainParams(), TrainJobOptions(), "train-abc",
        shared_dir=tmp_path / "shared", poll_seconds=0, echo=lines.append,
    )  # fmt: skip
    assert trainjob_state(job) == "Complete"
    assert (tmp_path / "model" / "model.onnx").read_text() == "onnx"
    assert lines == ["progress: epoch 1 of 1"]
    assert not (tmp_path / "shared" / "train-abc").exists()  # the run's folder is cleaned up
    validate(fake.created, "TrainJob")


def test_a_failed_trainjob_fails_the_step_with_its_reason(tmp_path):
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    (prepared / "manifest.json").write_text("{}")
    fake = FakeKubernetes(tmp_path / "shared", ends="Failed")
    with pytest.raises(TrainJobFailed, match="DeadlineExceeded"):
        run_trainjob(
            fake, fake, prepared, tmp_path / "model", TrainParams(), TrainJobOptions(), "t",
            shared_dir=tmp_path / "shared", poll_seconds=0, echo=lambda line: None,
        )  # fmt: skip
    assert not (tmp_path / "model").exists()
