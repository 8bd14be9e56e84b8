"""The deploy_model KFP component: its body through ``python_func`` and its compiled IR.

No Kubernetes API server runs on this machine: the component body builds the real
``KubernetesApi`` and calls ``http_predict``; these two names in
``planets_mlops.deploy.apply`` are replaced by the FAKE cluster of ``test_deploy_apply``
and a recording predictor (the API and HTTP boundaries only). The artifacts are real
``kfp.dsl`` objects on ``tmp_path``.
"""

# No ``from __future__ import annotations``: KFP reads the pipeline's annotations as types.
import json
from pathlib import Path
from typing import Any

import pytest
from kfp import dsl

from planets_mlops.components.deploy_model import deploy_model
from planets_mlops.components.images import RUNTIME_IMAGE, SERVING_IMAGE
from planets_mlops.deploy import apply as deploy_apply
from planets_mlops.errors import DeployError, InvalidParameterError
from tests.pure.test_deploy_apply import FakeCluster, Predictor, env_of
from tests.support.helpers import compile_ir, make_artifact

BENTO_URI = "gs://planets-artifacts/pipeline-root/run-1/package-model/bento/planets.bento"


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> FakeCluster:
    fake = FakeCluster({"planets_classifier:broken": "crashloop"})
    monkeypatch.setattr(deploy_apply, "KubernetesApi", lambda: fake)
    monkeypatch.setattr(deploy_apply, "http_predict", Predictor())
    return fake


def artifacts(
    tmp_path: Path, tag: str = "planets_classifier:v1", uri: str = BENTO_URI
) -> tuple[dsl.Artifact, dsl.Artifact]:
    bento = dsl.Artifact(name="bento", uri=uri, metadata={"bento_tag": tag} if tag else {})
    endpoint = make_artifact(dsl.Artifact, tmp_path / "endpoint.json")
    return bento, endpoint


def test_component_deploys_and_writes_endpoint(tmp_path: Path, cluster: FakeCluster) -> None:
    bento, endpoint = artifacts(tmp_path)
    deploy_model.python_func(bento=bento, endpoint=endpoint, timeout_s=60)
    meta = endpoint.metadata
    assert meta["endpoint_url"] == "http://planets-classifier.planets-serving.svc.cluster.local:3000"
    assert meta["revision"] == "1"
    assert meta["bento_tag"] == "planets_classifier:v1"
    assert meta["changed"] is True
    assert meta["serving_image"] == SERVING_IMAGE  # empty parameter = this release's image
    assert json.loads(Path(endpoint.path).read_text()) == meta
    deployed = cluster.deployment()
    assert env_of(deployed)["BENTO_URI"] == BENTO_URI
    assert deployed["spec"]["template"]["spec"]["containers"][0]["image"] == SERVING_IMAGE


def test_component_turns_on_the_production_inbox_and_the_records(
    tmp_path: Path, cluster: FakeCluster
) -> None:
    bento, endpoint = artifacts(tmp_path)
    deploy_model.python_func(
        bento=bento,
        endpoint=endpoint,
        monitoring_uri="gs://planets-bucket/monitoring",
        inbox_uri="gs://planets-bucket/inbox",
        inbox_max_items=200,
    )
    env = env_of(cluster.deployment())
    assert env["PLANETS_INBOX"] == "gs://planets-bucket/inbox" and env["PLANETS_INBOX_MAX_ITEMS"] == "200"
    assert env["PLANETS_MONITORING_URI"] == "gs://planets-bucket/monitoring"


def test_component_is_idempotent(tmp_path: Path, cluster: FakeCluster) -> None:
    for _ in range(2):
        bento, endpoint = artifacts(tmp_path)
        deploy_model.python_func(bento=bento, endpoint=endpoint, replicas=2)
    assert endpoint.metadata["changed"] is False
    assert endpoint.metadata["revision"] == "1"


def test_component_rolls_back_and_fails_the_task(tmp_path: Path, cluster: FakeCluster) -> None:
    deploy_model.python_func(*artifacts(tmp_path))
    bento, endpoint = artifacts(tmp_path, tag="planets_classifier:broken")
    with pytest.raises(DeployError, match="CrashLoopBackOff"):
        deploy_model.python_func(bento=bento, endpoint=endpoint)
    assert env_of(cluster.deployment())["BENTO_TAG"] == "planets_classifier:v1"
    assert "endpoint_url" not in endpoint.metadata


@pytest.mark.parametrize(
    ("overrides", "kwargs", "name"),
    [
        ({"tag": ""}, {}, "bento_tag"),
        ({"uri": "/tmp/pipeline-root/bento/planets.bento"}, {}, "bento.uri"),
        ({}, {"serving_image": "ghcr.io/planets-mlops/serving:latest"}, "serving_image"),
        ({}, {"monitoring_uri": "/var/records"}, "monitoring_uri"),
        ({}, {"inbox_uri": "inbox/"}, "inbox_uri"),
    ],
)
def test_component_rejects_bad_inputs_before_any_api_call(
    tmp_path: Path, cluster: FakeCluster, overrides: dict[str, Any], kwargs: dict[str, Any], name: str
) -> None:
    bento, endpoint = artifacts(tmp_path, **overrides)
    with pytest.raises(InvalidParameterError, match=name.replace("[", r"\[")):
        deploy_model.python_func(bento=bento, endpoint=endpoint, **kwargs)
    assert cluster.calls == []


def test_compiled_pipeline_runs_deploy_on_runtime_image_without_cache(tmp_path: Path) -> None:
    @dsl.pipeline(name="deploy-only")
    def deploy_only(bento_uri: str = BENTO_URI) -> None:
        bento = dsl.importer(
            artifact_uri=bento_uri,
            artifact_class=dsl.Artifact,
            metadata={"bento_tag": "planets_classifier:v1"},
        )
        task = deploy_model(bento=bento.output, kserve=False)
        task.set_caching_options(False)

    package = tmp_path / "deploy.yaml"
    ir, _ = compile_ir(deploy_only, package)
    executors = ir["deploymentSpec"]["executors"]
    (deploy_exec,) = [e for name, e in executors.items() if "deploy-model" in name]
    assert deploy_exec["container"]["image"] == RUNTIME_IMAGE
    # install_kfp_package=False: the image has kfp; nothing is pip-installed at run time.
    assert "pip install" not in " ".join(deploy_exec["container"]["command"])
    task = ir["root"]["dag"]["tasks"]["deploy-model"]
    assert task["cachingOptions"].get("enableCache", False) is False
    inputs = ir["components"]["comp-deploy-model"]["inputDefinitions"]
    assert inputs["parameters"]["serving_image"]["defaultValue"] == ""
    assert inputs["parameters"]["namespace"]["defaultValue"] == "planets-serving"
    # The service account (planets-pipeline-runner) is chosen per run, not in the IR.
    assert "serviceAccount" not in package.read_text()
