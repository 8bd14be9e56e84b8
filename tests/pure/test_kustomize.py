"""Every kustomize overlay hydrates with the real ``kubectl kustomize`` and validates.

Objects are validated OFFLINE against the Kubernetes 1.30 JSON schemas shipped by the
``kubernetes-validate`` package (strict: unknown fields fail); no cluster is contacted.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2] / "kustomize"
TARGETS = ["base", "overlays/kind", "overlays/gke", "overlays/gke-evidently-ui"]
K8S_VERSION = "1.30"

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")


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


def find(objs: tuple[dict[str, Any], ...], kind: str, name: str) -> dict[str, Any]:
    matches = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def test_every_overlay_directory_is_tested() -> None:
    overlays = sorted(f"overlays/{p.name}" for p in (ROOT / "overlays").iterdir() if p.is_dir())
    assert overlays == sorted(TARGETS[1:])


@pytest.mark.parametrize("target", TARGETS)
def test_overlay_hydrates_and_validates_offline(target: str) -> None:
    objs = hydrate(target)
    assert objs
    for obj in objs:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") in {"kubeflow", "planets-serving"}, obj["metadata"]


@pytest.mark.parametrize("target", TARGETS)
def test_identities_and_namespace(target: str) -> None:
    objs = hydrate(target)
    find(objs, "Namespace", "planets-serving")
    runner = find(objs, "ServiceAccount", "planets-pipeline-runner")
    assert runner["metadata"]["namespace"] == "kubeflow"
    serving = find(objs, "ServiceAccount", "planets-serving")
    assert serving["metadata"]["namespace"] == "planets-serving"


@pytest.mark.parametrize("target", TARGETS)
def test_runner_role_is_least_privilege(target: str) -> None:
    objs = hydrate(target)
    role = find(objs, "Role", "planets-deployer")
    assert role["metadata"]["namespace"] == "planets-serving"
    assert not [o for o in objs if o["kind"] in {"ClusterRole", "ClusterRoleBinding"}]
    granted = {
        (g, r): set(rule["verbs"])
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
    }
    assert set(granted) == {
        ("apps", "deployments"),
        ("", "services"),
        ("serving.kserve.io", "inferenceservices"),
        ("", "pods"),
        ("coordination.k8s.io", "leases"),
    }
    assert granted[("", "pods")] == {"get", "list"}
    # The deploy Lease: get, create (first deploy), patch (take over an expired one), delete.
    assert granted[("coordination.k8s.io", "leases")] == {"get", "create", "patch", "delete"}
    assert all("*" not in verbs for verbs in granted.values())
    binding = find(objs, "RoleBinding", "planets-deployer")
    assert binding["metadata"]["namespace"] == "planets-serving"
    assert binding["roleRef"]["name"] == "planets-deployer"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "planets-pipeline-runner", "namespace": "kubeflow"}
    ]


@pytest.mark.parametrize("target", TARGETS)
def test_pipeline_root_is_a_bucket(target: str) -> None:
    launcher = find(hydrate(target), "ConfigMap", "kfp-launcher")
    assert launcher["metadata"]["namespace"] == "kubeflow"
    assert launcher["data"]["defaultPipelineRoot"].startswith("gs://")


@pytest.mark.parametrize("target", TARGETS)
def test_secrets_are_templates_with_placeholders_only(target: str) -> None:
    objs = hydrate(target)
    label_studio = find(objs, "Secret", "label-studio")
    assert set(label_studio["stringData"]) == {"LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY"}
    assert label_studio["stringData"]["LABEL_STUDIO_API_KEY"] == "REPLACE_ME"
    for secret in (o for o in objs if o["kind"] == "Secret"):
        assert secret["metadata"]["labels"]["planets-mlops.io/template"] == "secret"
        assert "data" not in secret  # nothing base64-encoded that could hide a real value
        assert all("REPLACE" in v or "example.invalid" in v for v in secret["stringData"].values())
    assert any(o["kind"] == "Secret" and o["metadata"]["name"] == "gcs-credentials" for o in objs)


def test_kind_reads_the_bucket_with_the_key_secret() -> None:
    objs = hydrate("overlays/kind")
    providers = yaml.safe_load(find(objs, "ConfigMap", "kfp-launcher")["data"]["providers"])
    secret_ref = providers["gs"]["default"]["credentials"]["secretRef"]
    assert secret_ref == {"secretName": "gcs-credentials", "tokenKey": "key.json"}
    secrets = {(o["metadata"]["namespace"], o["metadata"]["name"]) for o in objs if o["kind"] == "Secret"}
    # The pipeline's writable key stays in the KFP namespace; serving pods get a separate
    # read-only key (deploy_model mounts gcs-serving-credentials, tests/component/test_compile.py).
    assert ("kubeflow", "gcs-credentials") in secrets
    assert ("planets-serving", "gcs-serving-credentials") in secrets
    assert ("planets-serving", "gcs-credentials") not in secrets
    assert not any("iam.gke.io/gcp-service-account" in (o["metadata"].get("annotations") or {}) for o in objs)


def test_gke_uses_workload_identity_and_no_unused_node_pool_settings() -> None:
    objs = hydrate("overlays/gke")
    # ml-pipeline-ui: the KFP UI reads gs:// artifacts with its own Google identity.
    for name in ("planets-pipeline-runner", "planets-serving", "ml-pipeline-ui"):
        annotations = find(objs, "ServiceAccount", name)["metadata"]["annotations"]
        assert annotations["iam.gke.io/gcp-service-account"].endswith(".iam.gserviceaccount.com")
    ui = find(objs, "ServiceAccount", "ml-pipeline-ui")
    assert ui["metadata"]["namespace"] == "kubeflow"
    assert ui["metadata"]["annotations"]["iam.gke.io/gcp-service-account"].startswith("planets-ui@")
    # Training's placement is compiled into the pipeline; a ConfigMap of node-pool settings
    # that nothing reads would only drift from it.
    assert not [o for o in objs if o["kind"] == "ConfigMap" and "gpu" in o["metadata"]["name"]]


KIND_E2E = ROOT.parent / "scripts" / "kind_e2e.sh"
CLUSTER_SETUP = ROOT.parent / "docs" / "cluster-setup.md"


def _print_setup(bucket: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "GCS_BUCKET": bucket}
    return subprocess.run(
        ["bash", str(KIND_E2E), "--print-setup"], capture_output=True, text=True, timeout=60, env=env
    )


def test_kind_setup_fills_the_bucket_and_keeps_secrets_templates() -> None:
    result = _print_setup("my-planets-bucket")
    assert result.returncode == 0, result.stderr
    assert "REPLACE-WITH-BUCKET" not in result.stdout
    objs = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    for obj in objs:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    launcher = find(tuple(objs), "ConfigMap", "kfp-launcher")
    assert (
        launcher["data"]["defaultPipelineRoot"] == "gs://my-planets-bucket/planets-mlops/kind/pipeline-root"
    )
    for secret in (o for o in objs if o["kind"] == "Secret"):
        assert all("REPLACE" in v or "example.invalid" in v for v in secret["stringData"].values())


@pytest.mark.parametrize("bucket", ["", "gs://my-bucket", "UPPER", "a"])
def test_kind_setup_refuses_a_bad_bucket_name(bucket: str) -> None:
    result = _print_setup(bucket)
    assert result.returncode == 1
    assert "GCS_BUCKET" in result.stderr and "bucket" in result.stderr


def _sdk_line() -> str:
    lock = (ROOT.parent / "requirements.lock").read_text()
    (version,) = re.findall(r"^kfp==(\d+\.\d+)\.\d+", lock, flags=re.MULTILINE)
    return version


def test_kfp_backend_is_pinned_to_the_sdk_release_line() -> None:
    # The driver, launcher and Argo rights checked by tests/pure/test_rbac.py are 2.17.0's.
    line = _sdk_line()
    script = KIND_E2E.read_text()
    (default,) = re.findall(r'KFP_VERSION="\$\{KFP_VERSION:-([0-9.]+)\}"', script)
    assert default.startswith(line + "."), (default, line)
    (documented,) = re.findall(r"export KFP_VERSION=([0-9.]+)", CLUSTER_SETUP.read_text())
    assert documented == default


def test_kind_script_applies_the_setup_after_every_kfp_install() -> None:
    # KFP's install owns kfp-launcher and resets it: the project's overlay comes after it.
    lines = KIND_E2E.read_text().splitlines()
    kfp = max(i for i, line in enumerate(lines) if "env/platform-agnostic?ref=" in line)
    ours = min(i for i, line in enumerate(lines) if 'kubectl apply -f "$setup"' in line)
    check = min(i for i, line in enumerate(lines) if "jsonpath='{.data.defaultPipelineRoot}'" in line)
    assert kfp < ours < check


def test_the_optional_evidently_ui_serves_the_workspace_in_the_bucket() -> None:
    objs = hydrate("overlays/gke-evidently-ui")
    deployment = find(objs, "Deployment", "evidently-ui")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    command = container["command"]
    assert command[:2] == ["evidently", "ui"]
    assert command[command.index("--workspace") + 1] == "gs://PROJECT_ID-planets-mlops/evidently"
    assert command[command.index("--host") + 1] == "0.0.0.0"
    # Placeholders, filled by docs/cluster-setup.md's sed (test below): no tag that was never built.
    assert container["image"] == "REGISTRY/runtime:IMAGE_TAG"
    assert (
        container["securityContext"]["readOnlyRootFilesystem"] is True
        and pod["securityContext"]["runAsNonRoot"]
    )
    account = find(objs, "ServiceAccount", pod["serviceAccountName"])
    assert account["metadata"]["annotations"]["iam.gke.io/gcp-service-account"].startswith("planets-ui@")
    service = find(objs, "Service", "evidently-ui")
    assert service["spec"]["type"] == "ClusterIP" and service["spec"]["ports"][0]["port"] == 8000
    # Optional: the plain overlays do not run it.
    assert not [o for o in hydrate("overlays/gke") if o["metadata"]["name"] == "evidently-ui"]


@pytest.mark.parametrize("target", TARGETS)
def test_every_image_is_pinned(target: str) -> None:
    for obj in hydrate(target):
        spec = obj.get("spec", {}).get("template", {}).get("spec", {})
        for container in spec.get("containers", []) + spec.get("initContainers", []):
            reference = container["image"]
            assert "@sha256:" in reference or (":" in reference.rsplit("/", 1)[-1]), reference
            assert not reference.endswith(":latest"), reference


def test_the_evidently_ui_runs_the_runtime_image_that_was_built(tmp_path: Path) -> None:
    from planets_mlops.components.images import IMAGE_TAG

    # docs/cluster-setup.md's substitution, on a copy of the tree.
    registry = "europe-docker.pkg.dev/my-project/planets"
    copy = tmp_path / "kustomize"
    shutil.copytree(ROOT, copy)
    overlay = copy / "overlays" / "gke-evidently-ui" / "kustomization.yaml"
    overlay.write_text(
        overlay.read_text().replace("REGISTRY/runtime", f"{registry}/runtime").replace("IMAGE_TAG", IMAGE_TAG)
    )
    out = subprocess.run(
        ["kubectl", "kustomize", str(overlay.parent)], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    deployment = next(d for d in yaml.safe_load_all(out) if d and d["kind"] == "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"{registry}/runtime:{IMAGE_TAG}"
    assert "s#IMAGE_TAG#" in CLUSTER_SETUP.read_text()
