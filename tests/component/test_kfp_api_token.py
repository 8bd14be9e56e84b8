"""The alert's way into the KFP API on multi-user Kubeflow, checked offline (issue 22, item 5).

No Kubernetes API server, Kubeflow admission webhook or KFP API server runs here. The
kustomize component is hydrated with the real ``kubectl kustomize``; what Kubeflow's
PodDefault webhook does to the alert pod is reproduced with ``kubectl patch --local`` (a
strategic merge of the PodDefault's env, volumes and mounts into the pod the KFP driver
makes from the compiled IR), and the result is validated against the Kubernetes 1.30
schemas. The audience and the verbs are the ones upstream KFP's API server asks for
(backend/src/apiserver/common/const.go: DefaultTokenReviewAudience, Rbac*).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from planets_mlops.app.kfp_client import DEFAULT_SERVICE_ACCOUNT
from planets_mlops.monitoring.trigger import SA_TOKEN_PATH, TOKEN_AUDIENCE, TOKEN_LABEL

ROOT = Path(__file__).resolve().parents[2] / "kustomize"
pytestmark = [
    pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed"),
]


def _kubectl(*args: str, stdin: str | None = None) -> str:
    return subprocess.run(["kubectl", *args], input=stdin, check=True, capture_output=True, text=True,
                          timeout=60).stdout  # fmt: skip


@pytest.fixture(scope="module")
def hydrated(tmp_path_factory) -> list[dict]:
    # The base with the component, as a multi-user overlay would include it.
    overlay = tmp_path_factory.mktemp("overlay")
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(ROOT / "base", overlay)],
        "components": [os.path.relpath(ROOT / "components" / "kfp-api-token", overlay)],
    }))  # fmt: skip
    out = _kubectl("kustomize", str(overlay))  # kustomize takes no absolute roots: relative ones
    return [doc for doc in yaml.safe_load_all(out) if doc]


def _one(objs: list[dict], kind: str) -> dict:
    (found,) = [o for o in objs if o["kind"] == kind and o["metadata"]["name"].startswith("planets-")
                and (kind != "Role" or o["metadata"]["name"] == "planets-alert-kfp-api")
                and (kind != "RoleBinding" or o["metadata"]["name"] == "planets-alert-kfp-api")]  # fmt: skip
    return found


def test_the_pod_default_mounts_the_pipelines_token_where_the_alert_reads_it(hydrated):
    spec = _one(hydrated, "PodDefault")["spec"]
    assert spec["selector"]["matchLabels"] == dict([TOKEN_LABEL])
    ((source,),) = [v["projected"]["sources"] for v in spec["volumes"]]
    token = source["serviceAccountToken"]
    assert token["audience"] == TOKEN_AUDIENCE == "pipelines.kubeflow.org"
    (mount,) = spec["volumeMounts"]
    assert f"{mount['mountPath']}/{token['path']}" == SA_TOKEN_PATH and mount["readOnly"]
    assert spec["env"] == [{"name": "KF_PIPELINES_SA_TOKEN_PATH", "value": SA_TOKEN_PATH}]


def test_the_runner_may_make_exactly_the_calls_the_alert_makes(hydrated):
    role, binding = _one(hydrated, "Role"), _one(hydrated, "RoleBinding")
    for obj in (role, binding):
        kubernetes_validate.validate(obj, "1.30", strict=True)
    granted = {(r, v) for rule in role["rules"] for r in rule["resources"] for v in rule["verbs"]}
    assert all(rule["apiGroups"] == ["pipelines.kubeflow.org"] for rule in role["rules"])
    needed = {("pipelines", "get"), ("pipelines", "list"), ("experiments", "list"), ("experiments", "create"),
              ("runs", "list"), ("runs", "create")}  # fmt: skip
    assert needed <= granted and not {v for _, v in granted} & {"delete", "update", "terminate"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": DEFAULT_SERVICE_ACCOUNT,
                                    "namespace": role["metadata"]["namespace"]}]  # fmt: skip


def test_the_alert_pod_with_the_pod_default_merged_is_valid_and_has_the_token(hydrated, tmp_path):
    from planets_mlops.pipelines.compile import compile_all
    from tests.support.helpers import load_ir

    (path,) = [p for p in compile_all(tmp_path / "ir") if p.stem == "monitoring"]
    executor = load_ir(path)[1]["deploymentSpec"]["executors"]["exec-raise-alert"]
    # The pod as KFP's driver builds it from the IR: labels and downward-API variables.
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "raise-alert", "namespace": "kubeflow",
                     "labels": executor["podMetadata"]["labels"]},
        "spec": {"serviceAccountName": DEFAULT_SERVICE_ACCOUNT, "containers": [{
            "name": "main", "image": "runtime",
            "env": [{"name": e["name"], "valueFrom": {"fieldRef": {"fieldPath": e["fieldPath"]}}}
                    for e in executor["fieldPathAsEnv"]],
        }]},
    }  # fmt: skip
    spec = _one(hydrated, "PodDefault")["spec"]
    assert all(pod["metadata"]["labels"].get(k) == v for k, v in spec["selector"]["matchLabels"].items())
    patch = {"spec": {"volumes": spec["volumes"], "containers": [
        {"name": "main", "env": spec["env"], "volumeMounts": spec["volumeMounts"]}]}}  # fmt: skip
    (tmp_path / "pod.yaml").write_text(yaml.safe_dump(pod))
    merged = json.loads(_kubectl("patch", "--local", "-f", str(tmp_path / "pod.yaml"), "--type", "strategic",
                                 "-p", json.dumps(patch), "-o", "json"))  # fmt: skip
    kubernetes_validate.validate(merged, "1.30", strict=True)
    (container,) = merged["spec"]["containers"]
    env = {e["name"]: e.get("value") or e["valueFrom"]["fieldRef"]["fieldPath"] for e in container["env"]}
    assert env == {"KFP_NAMESPACE": "metadata.namespace",
                   "KFP_RUN_SERVICE_ACCOUNT": "spec.serviceAccountName",
                   "KF_PIPELINES_SA_TOKEN_PATH": SA_TOKEN_PATH}  # fmt: skip
    (volume,) = merged["spec"]["volumes"]
    assert volume["projected"]["sources"][0]["serviceAccountToken"]["audience"] == TOKEN_AUDIENCE
    assert container["volumeMounts"][0]["name"] == volume["name"]
