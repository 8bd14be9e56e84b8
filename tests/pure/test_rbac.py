"""The run's service account can do every Kubernetes call a KFP 2.17 run makes, offline.

Every overlay is rendered with the real ``kubectl kustomize``; the Roles bound to
``planets-pipeline-runner`` are then evaluated with Kubernetes' RBAC matching rules
(apiGroups, resources, verbs, resourceNames, ``*``) against ``NEEDED``: the explicit list
of API calls made by the pods of a run. No cluster is contacted.

Each entry cites the upstream source that makes the call, read at the tags the project
pins: kubeflow/pipelines ``2.17.0`` (the SDK's release line) and
argoproj/argo-workflows ``v4.0.5`` (the Argo release KFP 2.17.0's
``manifests/kustomize/third-party/argo/base/kustomization.yaml`` installs).
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2] / "kustomize"
OVERLAYS = ["overlays/kind", "overlays/gke"]
RUNNER = ("kubeflow", "planets-pipeline-runner")
KFP_NAMESPACE = "kubeflow"

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")


@dataclass(frozen=True)
class Call:
    """One API call made under the run's service account."""

    who: str
    group: str
    resource: str
    verb: str
    name: str | None  # a fixed object name, or None when the name varies (own pod, run)
    source: str

    def __str__(self) -> str:
        target = f"{self.resource}/{self.name}" if self.name else self.resource
        return f"{self.verb} {self.group or 'core'}:{target} ({self.who}; {self.source})"


KFP = "kubeflow/pipelines@2.17.0:"
ARGO = "argoproj/argo-workflows@v4.0.5:"

NEEDED = [
    Call(
        "KFP root-DAG driver, importer",
        "",
        "configmaps",
        "get",
        "kfp-launcher",
        KFP + "backend/src/v2/config/env.go FromConfigMap, called by driver/root_dag.go and "
        "component/importer_launcher.go",
    ),
    Call(
        "KFP driver",
        "argoproj.io",
        "workflows",
        "get",
        None,
        KFP + "backend/src/v2/cmd/driver/main.go getCurrentWorkflowMetadata",
    ),
    Call(
        "KFP driver",
        "",
        "pods",
        "get",
        None,
        KFP + "backend/src/v2/driver/k8s.go publishDriverExecution",
    ),
    Call(
        "KFP launcher",
        "",
        "pods",
        "get",
        None,
        KFP + "backend/src/v2/component/launcher_v2.go retryIndexFromPodAnnotation",
    ),
    Call(
        "KFP launcher (in-cluster store credentials)",
        "",
        "secrets",
        "get",
        "mlpipeline-minio-artifact",
        KFP + "backend/src/v2/objectstore/object_store.go createS3BucketSession; "
        "backend/src/v2/config/env.go minioArtifactSecretName",
    ),
    Call(
        "Argo executor (archived logs)",
        "",
        "secrets",
        "get",
        "mlpipeline-minio-artifact",
        ARGO + "workflow/executor/executor.go GetSecrets; the secret is named by KFP's "
        "manifests/kustomize/third-party/argo/base/workflow-controller-configmap-patch.yaml",
    ),
    Call(
        "Argo executor",
        "argoproj.io",
        "workflowtaskresults",
        "create",
        None,
        ARGO + "workflow/executor/taskresult.go createTaskResult; docs/workflow-rbac.md",
    ),
    Call(
        "Argo executor",
        "argoproj.io",
        "workflowtaskresults",
        "patch",
        None,
        ARGO + "workflow/executor/taskresult.go patchTaskResult, patchTaskResultLabels",
    ),
    # With KFP's MLflow plugin on and its default auth "kubernetes", the driver and launcher
    # (backend/src/common/plugins/mlflow/config.go ResolveRuntimeMLflowCredentials) and the
    # steps (MLFLOW_TRACKING_AUTH=kubernetes, backend/src/v2/common/plugins/mlflow/handler.go)
    # call Kubeflow's MLflow with the run's service-account token; that server authorizes each
    # call as these verbs on experiments.mlflow.kubeflow.org (upstream's runner Role grants them).
    *(
        Call(
            "Kubeflow MLflow (KFP MLflow plugin, kubernetes auth)",
            "mlflow.kubeflow.org",
            "experiments",
            verb,
            None,
            KFP + "manifests/kustomize/base/pipeline/pipeline-runner-role.yaml; "
            "backend/src/common/plugins/mlflow/config.go",
        )
        for verb in ("get", "list", "create", "update")
    ),
]

# The upstream pipeline-runner Role of KFP 2.17.0
# (manifests/kustomize/base/pipeline/pipeline-runner-role.yaml), as (groups, resources,
# verbs). The project's Role must stay inside it: derived from it, never wider.
UPSTREAM_PIPELINE_RUNNER = [
    ({""}, {"secrets"}, {"get"}),
    ({""}, {"configmaps"}, {"get", "watch", "list"}),
    ({""}, {"persistentvolumes", "persistentvolumeclaims"}, {"*"}),
    ({"snapshot.storage.k8s.io"}, {"volumesnapshots"}, {"create", "delete", "get"}),
    ({"argoproj.io"}, {"workflows"}, {"get", "list", "watch", "update", "patch"}),
    ({""}, {"pods", "pods/exec", "pods/log", "services"}, {"*"}),
    ({"", "apps", "extensions"}, {"deployments", "replicasets"}, {"*"}),
    ({"kubeflow.org"}, {"*"}, {"*"}),
    ({"batch"}, {"jobs"}, {"*"}),
    ({"machinelearning.seldon.io"}, {"seldondeployments"}, {"*"}),
    ({"argoproj.io"}, {"workflowtaskresults"}, {"create", "patch"}),
    ({"mlflow.kubeflow.org"}, {"experiments"}, {"get", "list", "create", "update"}),
]


@cache
def hydrate(target: str) -> tuple[dict[str, Any], ...]:
    out = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / target)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return tuple(doc for doc in yaml.safe_load_all(out) if doc)


def launcher_secret_names(objs: tuple[dict[str, Any], ...]) -> list[str]:
    """Secrets named by kfp-launcher's ``providers`` (read by the launcher per step)."""
    launcher = [o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "kfp-launcher"]
    names = []
    for cm in launcher:
        providers = yaml.safe_load(cm["data"].get("providers", "") or "{}") or {}
        for provider in providers.values():
            entries = [provider.get("default") or {}, *(provider.get("overrides") or [])]
            for entry in entries:
                ref = (entry.get("credentials") or {}).get("secretRef") or {}
                if ref.get("secretName"):
                    names.append(ref["secretName"])
    return names


def needed_calls(objs: tuple[dict[str, Any], ...]) -> list[Call]:
    """``NEEDED`` plus the launcher's reads of the secrets this overlay's providers name."""
    extra = [
        Call(
            "KFP launcher (bucket key from kfp-launcher providers)",
            "",
            "secrets",
            "get",
            name,
            KFP + "backend/src/v2/objectstore/object_store.go getGCSTokenClient",
        )
        for name in launcher_secret_names(objs)
    ]
    return NEEDED + extra


def runner_rules(objs: tuple[dict[str, Any], ...], namespace: str = KFP_NAMESPACE) -> list[dict[str, Any]]:
    """Rules of every Role bound to the runner's service account in ``namespace``."""
    sa_ns, sa_name = RUNNER
    roles = {
        o["metadata"]["name"]: o
        for o in objs
        if o["kind"] == "Role" and o["metadata"]["namespace"] == namespace
    }
    rules: list[dict[str, Any]] = []
    for binding in objs:
        if binding["kind"] != "RoleBinding" or binding["metadata"]["namespace"] != namespace:
            continue
        subjects = binding.get("subjects") or []
        if not any(
            s["kind"] == "ServiceAccount" and s["name"] == sa_name and s.get("namespace") == sa_ns
            for s in subjects
        ):
            continue
        assert binding["roleRef"]["kind"] == "Role", binding["metadata"]["name"]
        rules.extend(roles[binding["roleRef"]["name"]]["rules"])
    return rules


def allows(rules: list[dict[str, Any]], call: Call) -> bool:
    """Kubernetes RBAC: does any rule grant ``call``?"""
    for rule in rules:
        if not ({call.group, "*"} & set(rule.get("apiGroups", []))):
            continue
        if not ({call.resource, "*"} & set(rule.get("resources", []))):
            continue
        if not ({call.verb, "*"} & set(rule.get("verbs", []))):
            continue
        names = rule.get("resourceNames")  # empty or absent: every object
        if names and (call.name is None or call.name not in names):
            continue  # resourceNames restrict the rule to those objects
        return True
    return False


def missing(rules: list[dict[str, Any]], calls: list[Call]) -> list[str]:
    return [str(call) for call in calls if not allows(rules, call)]


@pytest.mark.parametrize("target", OVERLAYS)
def test_runner_can_make_every_call_of_a_kfp_run(target: str) -> None:
    objs = hydrate(target)
    rules = runner_rules(objs)
    assert rules, f"no Role bound to {RUNNER} in {KFP_NAMESPACE} ({target})"
    assert missing(rules, needed_calls(objs)) == []


def test_kind_launcher_key_secret_is_readable() -> None:
    # The kind overlay's launcher reads its key through the API, so the Role must name it.
    objs = hydrate("overlays/kind")
    assert launcher_secret_names(objs) == ["gcs-credentials"]
    assert allows(runner_rules(objs), needed_calls(objs)[-1])


@pytest.mark.parametrize("target", OVERLAYS)
def test_runner_rights_stay_inside_upstream_pipeline_runner(target: str) -> None:
    for rule in runner_rules(hydrate(target)):
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    assert verb != "*" and resource != "*", rule
                    assert any(
                        group in g and (resource in r or "*" in r) and (verb in v or "*" in v)
                        for g, r, v in UPSTREAM_PIPELINE_RUNNER
                    ), f"{verb} {group}:{resource} is not in upstream KFP 2.17.0's pipeline-runner Role"


@pytest.mark.parametrize("call", NEEDED, ids=str)
def test_the_check_fails_when_any_needed_right_is_removed(call: Call) -> None:
    # The check above must not pass by accident: strip one needed verb (or object name)
    # from the rendered Role and it must report exactly that call.
    objs = hydrate("overlays/gke")
    rules = copy.deepcopy(runner_rules(objs))
    for rule in rules:
        if {call.group} & set(rule["apiGroups"]) and call.resource in rule["resources"]:
            if call.name and rule.get("resourceNames"):
                rule["resourceNames"] = [n for n in rule["resourceNames"] if n != call.name]
                if not rule["resourceNames"]:
                    rule["verbs"] = []  # an empty resourceNames list would grant every object
            else:
                rule["verbs"] = [v for v in rule["verbs"] if v != call.verb]
    assert str(call) in missing(rules, needed_calls(objs))


def test_a_wrong_object_name_does_not_count() -> None:
    rules = [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["other"], "verbs": ["get"]}]
    assert missing(rules, NEEDED[:1]) == [str(NEEDED[0])]
    rules = [{"apiGroups": [""], "resources": ["pods"], "resourceNames": ["some-pod"], "verbs": ["get"]}]
    assert not allows(rules, NEEDED[2])  # own pod: its name varies, a name list cannot grant it


def test_serving_rights_are_not_in_the_kfp_namespace() -> None:
    # deploy_model's rights live in planets-serving only (tests/pure/test_kustomize.py).
    for target in OVERLAYS:
        rules = runner_rules(hydrate(target))
        for resource in ("deployments", "services", "inferenceservices"):
            for group in ("", "apps", "serving.kserve.io"):
                assert not allows(rules, Call("", group, resource, "create", None, ""))
        assert runner_rules(hydrate(target), "planets-serving")
