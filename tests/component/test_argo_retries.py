"""The retry policy and timeout each task of a compiled pipeline really gets on a cluster.

No Argo controller runs here, so the merge it does is reproduced offline with the real
``kubectl patch --local``: (1) this project's patch of the workflow controller's settings
(``kustomize/argo/workflow-controller-configmap-patch.yaml``) merged into upstream KFP
2.17.0's ConfigMap (a copy in ``tests/support/fixtures/upstream``); (2) each task's ``retryStrategy``
as KFP 2.17's compiler emits it from the IR's ``retryPolicy``
(``backend/src/v2/compiler/argocompiler/container.go``: limit, backoff duration, factor and
maxDuration, never a policy) merged over the resulting ``templateDefaults``, as Argo v4.0.5
merges template defaults (``mergedTemplateDefaultsInto``: a strategic merge of the template
over the defaults; ``retryStrategy`` holds no lists, so a JSON merge patch gives the same
result).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from kfp.dsl.structures import convert_duration_to_seconds

from planets_mlops.pipelines.compile import compile_pipeline
from planets_mlops.pipelines.platform import GKE, KIND, STEP_TIMEOUTS
from tests.support.helpers import load_ir

ROOT = Path(__file__).resolve().parents[2]
UPSTREAM = (
    ROOT / "tests" / "support" / "fixtures" / "upstream" / "kfp-2.17.0-workflow-controller-configmap.yaml"
)
OURS = ROOT / "kustomize" / "argo" / "workflow-controller-configmap-patch.yaml"
PIPELINES = ("training", "retraining", "monitoring")
# Steps with outside effects that must never run twice (docs/cluster-loop.md).
NOT_RETRIED = {"deploy-model", "raise-alert"}

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")


def _kubectl_merge(obj: dict[str, Any], patch: dict[str, Any] | Path) -> dict[str, Any]:
    """``kubectl patch --local --type merge`` of ``obj`` with ``patch`` (a dict or a patch file)."""
    args = ["--patch-file", str(patch)] if isinstance(patch, Path) else ["-p", json.dumps(patch)]
    out = subprocess.run(
        ["kubectl", "patch", "--local", "-f", "-", "--type", "merge", *args, "-o", "json"],
        input=json.dumps(obj),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return json.loads(out)


@cache
def template_defaults(patched: bool) -> str:
    """The controller's ``templateDefaults`` (JSON), upstream's or with this project's patch."""
    configmap = yaml.safe_load(UPSTREAM.read_text())
    if patched:
        configmap = _kubectl_merge(configmap, OURS)
    return json.dumps(yaml.safe_load(configmap["data"]["workflowDefaults"])["spec"]["templateDefaults"])


def emitted_retry_strategy(task: dict[str, Any]) -> dict[str, Any] | None:
    """The ``retryStrategy`` KFP 2.17 compiles a task's IR ``retryPolicy`` to (None: none).

    ``getTaskRetryParametersWithValues``: the count and the factor always (``%v`` of the
    float, so 2.0 is ``"2"``), the durations as whole seconds when set.
    """
    policy = task.get("retryPolicy")
    if policy is None:
        return None
    factor = float(policy.get("backoffFactor", 0))
    backoff = {"factor": f"{factor:g}"}
    if "backoffDuration" in policy:
        backoff["duration"] = str(convert_duration_to_seconds(policy["backoffDuration"]))
    if "backoffMaxDuration" in policy:
        backoff["maxDuration"] = str(convert_duration_to_seconds(policy["backoffMaxDuration"]))
    return {"limit": str(policy.get("maxRetryCount", 0)), "backoff": backoff}


@cache
def effective_retry(emitted: str, patched: bool) -> dict[str, Any]:
    """The ``retryStrategy`` Argo runs a template with: ``emitted`` (JSON) over the defaults."""
    workflow = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "merge"},
        "spec": {"templateDefaults": json.loads(template_defaults(patched))},
    }
    strategy = json.loads(emitted)
    if strategy is not None:
        workflow = _kubectl_merge(workflow, {"spec": {"templateDefaults": {"retryStrategy": strategy}}})
    return workflow["spec"]["templateDefaults"]["retryStrategy"]


@cache
def compiled(name: str, target: str, out: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    return load_ir(compile_pipeline(name, out / target, cluster={"gke": GKE, "kind": KIND}[target]))


def tasks_of(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    tasks = dict(spec["root"]["dag"]["tasks"])
    for component in spec["components"].values():
        tasks.update(component.get("dag", {}).get("tasks", {}))
    return {name: task for name, task in tasks.items() if not name.startswith("condition-")}


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("argo-ir")


@pytest.mark.parametrize("target", ["gke", "kind"])
@pytest.mark.parametrize("name", PIPELINES)
def test_failures_of_idempotent_steps_are_retried_with_backoff_and_effects_never(name, target, out):
    spec, _ = compiled(name, target, out)
    for task_name, task in tasks_of(spec).items():
        emitted = json.dumps(emitted_retry_strategy(task))
        policy = effective_retry(emitted, patched=True)
        if task_name in NOT_RETRIED:
            # Explicit limit 0: upstream's default limit (2, on Argo errors) never applies.
            assert policy["limit"] == "0", (task_name, policy)
            assert effective_retry(emitted, patched=False)["limit"] == "0", task_name
            continue
        assert policy["retryPolicy"] == "Always", (task_name, policy)
        assert policy["limit"] == "3", task_name
        assert policy["backoff"]["duration"] == "30" and policy["backoff"]["factor"] == "2", task_name
        # maxDuration is Argo's deadline for all attempts from the first one's start: every
        # attempt may use its whole timeout, plus the waits 30 + 60 + 120 s.
        timeout = STEP_TIMEOUTS[task_name]
        assert int(policy["backoff"]["maxDuration"]) == 4 * timeout + 210, task_name
        # Without this project's controller patch, the same task retries Argo errors only.
        assert effective_retry(emitted, patched=False)["retryPolicy"] == "OnError", task_name


def test_templates_without_own_retries_are_not_retried_at_all():
    # KFP's drivers and DAG templates (and other pipelines' tasks compiled without retries)
    # take the defaults as they are: with Always, a limit would re-run a failed DAG whole.
    assert effective_retry("null", patched=True) == {"limit": "0", "retryPolicy": "Always"}
    assert effective_retry("null", patched=False) == {"limit": "2", "retryPolicy": "OnError"}


def test_the_controller_patch_keeps_upstreams_other_settings():
    configmap = _kubectl_merge(yaml.safe_load(UPSTREAM.read_text()), OURS)
    upstream = yaml.safe_load(UPSTREAM.read_text())
    assert {k: v for k, v in configmap["data"].items() if k != "workflowDefaults"} == {
        k: v for k, v in upstream["data"].items() if k != "workflowDefaults"
    }
    ours = yaml.safe_load(configmap["data"]["workflowDefaults"])["spec"]
    theirs = yaml.safe_load(upstream["data"]["workflowDefaults"])["spec"]
    assert ours["ttlStrategy"] == theirs["ttlStrategy"]


@pytest.mark.parametrize("name", PIPELINES)
def test_every_task_has_a_timeout(name, out):
    spec, platform = compiled(name, "gke", out)
    executors = platform["deploymentSpec"]["executors"]
    for task_name, task in tasks_of(spec).items():
        executor = task["componentRef"]["name"].replace("comp-", "exec-", 1)
        assert int(executors[executor]["activeDeadlineSeconds"]) == STEP_TIMEOUTS[task_name], task_name
