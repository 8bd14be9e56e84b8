"""Serving manifests and the serving image's entrypoint, as pure functions.

Kubernetes objects are validated OFFLINE against the OpenAPI-derived JSON schemas that
the ``kubernetes-validate`` package ships (strict: unknown fields fail), for Kubernetes
1.30 (the API of the pinned ``kubernetes==30.1.0`` client). The KServe InferenceService is
a CRD with no schema in that package, so its shape is checked against the small JSON
schema ``INFERENCE_SERVICE_SCHEMA`` written here, and its predictor pod fields against
the core PodSpec schema.
"""

from __future__ import annotations

import copy
import http.server
import threading
from functools import partial
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from planets_mlops import serving_entrypoint
from planets_mlops.deploy import manifests
from planets_mlops.deploy.manifests import DeploySpec
from planets_mlops.errors import InvalidParameterError

K8S_VERSION = "1.30"

INFERENCE_SERVICE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "serving.kserve.io/v1beta1"},
        "kind": {"const": "InferenceService"},
        "metadata": {
            "type": "object",
            "required": ["name", "namespace"],
            "properties": {
                "name": {"type": "string", "pattern": "^[a-z]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63},
                "namespace": {"type": "string"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "spec": {
            "type": "object",
            "required": ["predictor"],
            "additionalProperties": False,
            "properties": {
                "predictor": {
                    "type": "object",
                    "required": ["containers"],
                    "properties": {
                        "minReplicas": {"type": "integer", "minimum": 0},
                        "maxReplicas": {"type": "integer", "minimum": 0},
                        "containers": {
                            "type": "array",
                            "minItems": 1,
                            "items": {
                                "type": "object",
                                "required": ["name", "image"],
                                "properties": {"name": {"const": "kserve-container"}},
                            },
                        },
                    },
                }
            },
        },
    },
}


def make_spec(**overrides: Any) -> DeploySpec:
    fields: dict[str, Any] = {
        "name": "planets-classifier",
        "namespace": "planets-serving",
        "image": "ghcr.io/planets-mlops/serving:0.1.0",
        "bento_uri": "gs://planets-artifacts/bentos/planets_classifier-v1.bento",
        "bento_tag": "planets_classifier:v1",
    }
    fields.update(overrides)
    return DeploySpec(**fields)


def validate_k8s(obj: dict[str, Any]) -> None:
    """Strict offline validation of a built-in kind, or the CRD schema above for KServe."""
    if obj["kind"] == "InferenceService":
        jsonschema.validate(obj, INFERENCE_SERVICE_SCHEMA)
        predictor = copy.deepcopy(obj["spec"]["predictor"])
        predictor.pop("minReplicas")
        predictor.pop("maxReplicas")
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": predictor}
        kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
        return
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


@pytest.mark.parametrize("kserve", [False, True])
@pytest.mark.parametrize("gcs_secret", ["", "gcs-credentials"])
def test_every_object_validates_offline(kserve: bool, gcs_secret: str) -> None:
    objects = manifests.desired_objects(make_spec(kserve=kserve, gcs_credentials_secret=gcs_secret))
    assert [o["kind"] for o in objects] == (["InferenceService"] if kserve else ["Deployment", "Service"])
    for obj in objects:
        validate_k8s(obj)


def test_validation_catches_a_broken_object() -> None:
    broken = manifests.deployment(make_spec())
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/x"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_k8s(broken)
    isvc = manifests.inference_service(make_spec(kserve=True))
    isvc["spec"]["predictor"]["containers"][0]["name"] = "bento"
    with pytest.raises(jsonschema.ValidationError):
        validate_k8s(isvc)


def test_deployment_has_probes_resources_and_hardening() -> None:
    spec = make_spec(replicas=3, cpu_limit="1500m", memory_limit="3Gi")
    dep = manifests.deployment(spec)
    pod = dep["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert dep["spec"]["replicas"] == 3
    assert container["image"] == spec.image
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": 3000}
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": 3000}
    assert container["startupProbe"]["failureThreshold"] * container["startupProbe"]["periodSeconds"] >= 300
    assert container["resources"]["limits"] == {"cpu": "1500m", "memory": "3Gi"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert "emptyDir" in volumes[mounts[manifests.BENTOML_HOME]]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["BENTO_URI"] == spec.bento_uri
    assert env["BENTO_TAG"] == spec.bento_tag
    assert env["BENTOML_HOME"] == manifests.BENTOML_HOME
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_selector_is_stable_across_models_and_matches_the_service() -> None:
    one, two = make_spec(), make_spec(bento_tag="planets_classifier:v2")
    dep_one, dep_two = manifests.deployment(one), manifests.deployment(two)
    assert dep_one["spec"]["selector"] == dep_two["spec"]["selector"]
    assert manifests.TEMPLATE_HASH_LABEL not in dep_one["spec"]["selector"]["matchLabels"]
    assert manifests.service(one)["spec"]["selector"] == dep_one["spec"]["selector"]["matchLabels"]
    pod_labels = dep_one["spec"]["template"]["metadata"]["labels"]
    assert dep_one["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_spec_hash_is_deterministic_and_follows_the_bento() -> None:
    def digest(spec: DeploySpec) -> str:
        return manifests.desired_objects(spec)[0]["metadata"]["annotations"][manifests.SPEC_HASH_ANNOTATION]

    assert digest(make_spec()) == digest(make_spec())
    assert digest(make_spec()) != digest(make_spec(bento_tag="planets_classifier:v2"))
    assert digest(make_spec()) != digest(make_spec(replicas=2))
    assert manifests.template_hash(make_spec()) == manifests.template_hash(make_spec(replicas=2))
    objects = manifests.desired_objects(make_spec())
    assert len({o["metadata"]["annotations"][manifests.SPEC_HASH_ANNOTATION] for o in objects}) == 1


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"name": "Planets"}, "name"),
        ({"name": "x" * 64}, "name"),
        ({"namespace": "planets_serving"}, "namespace"),
        ({"replicas": 0}, "replicas"),
        ({"memory_limit": "2 GB"}, "memory_limit"),
        ({"service_account": ""}, "service_account"),
        ({"gcs_credentials_secret": "GCS"}, "gcs_credentials_secret"),
        ({"monitoring_uri": "/var/records"}, "monitoring_uri"),
        ({"monitoring_uri": "gs://"}, "monitoring_uri"),
        ({"monitoring_sample": 0.0}, "monitoring_sample"),
        ({"monitoring_sample": 1.5}, "monitoring_sample"),
        ({"inbox_uri": "/var/inbox"}, "inbox_uri"),
        ({"inbox_max_items": 0, "inbox_uri": "gs://planets-bucket/inbox"}, "inbox_max_items"),
        ({"inbox_min_margin": 1.5, "inbox_uri": "gs://planets-bucket/inbox"}, "inbox_min_margin"),
    ],
)
def test_validate_spec_names_field_and_value(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidParameterError) as info:
        manifests.validate_spec(make_spec(**overrides))
    assert info.value.name == field
    assert repr(next(iter(overrides.values()))) in str(info.value)


def test_gcs_key_is_mounted_only_when_asked() -> None:
    plain = manifests.deployment(make_spec())["spec"]["template"]["spec"]
    keyed = manifests.deployment(make_spec(gcs_credentials_secret="gcs-credentials"))["spec"]["template"][
        "spec"
    ]
    assert all("secret" not in v for v in plain["volumes"])
    env = {e["name"]: e["value"] for e in keyed["containers"][0]["env"]}
    assert env["GOOGLE_APPLICATION_CREDENTIALS"] == "/var/secrets/google/key.json"
    assert {"name": "gcs-credentials", "secret": {"secretName": "gcs-credentials"}} in keyed["volumes"]


def test_monitoring_settings_reach_the_pod_only_when_asked() -> None:
    from planets_mlops.service.settings import ServingSettings

    def env_of(spec: manifests.DeploySpec) -> dict[str, str]:
        pod = manifests.deployment(spec)["spec"]["template"]["spec"]
        return {e["name"]: e["value"] for e in pod["containers"][0]["env"]}

    assert not any(name.startswith("PLANETS_MONITORING") for name in env_of(make_spec()))
    logged = env_of(make_spec(monitoring_uri="gs://planets-bucket/monitoring", monitoring_sample=0.25))
    assert logged["PLANETS_MONITORING_URI"] == "gs://planets-bucket/monitoring"
    # What the pod is given is what the service accepts.
    settings = ServingSettings.from_env(logged)
    assert (settings.monitoring_uri, settings.monitoring_sample) == ("gs://planets-bucket/monitoring", 0.25)
    assert manifests.template_hash(make_spec()) != manifests.template_hash(
        make_spec(monitoring_uri="gs://planets-bucket/monitoring")
    )


def test_the_production_inbox_reaches_the_pod_only_when_asked() -> None:
    from planets_mlops.inbox import params_from_env
    from planets_mlops.service.settings import ServingSettings

    def env_of(spec: manifests.DeploySpec) -> dict[str, str]:
        pod = manifests.deployment(spec)["spec"]["template"]["spec"]
        return {e["name"]: e["value"] for e in pod["containers"][0]["env"]}

    assert not any(name.startswith("PLANETS_INBOX") for name in env_of(make_spec()))
    spec = make_spec(
        inbox_uri="gs://planets-bucket/inbox",
        inbox_max_items=50,
        inbox_min_margin=0.3,
        monitoring_uri="gs://planets-bucket/monitoring",
    )
    env = env_of(spec)
    # What the pod is given is what the inbox and the service accept.
    uri, params = params_from_env(env)
    assert (uri, params.max_items, params.min_margin) == ("gs://planets-bucket/inbox", 50, 0.3)
    assert ServingSettings.from_env(env).monitoring_uri == "gs://planets-bucket/monitoring"
    assert manifests.template_hash(make_spec()) != manifests.template_hash(spec)


# -- serving entrypoint -------------------------------------------------------------


def test_serve_command() -> None:
    assert serving_entrypoint.serve_command("planets_classifier:v1") == [
        "bentoml",
        "serve",
        "planets_classifier:v1",
        "--host",
        "0.0.0.0",
        "--port",
        "3000",
    ]
    assert serving_entrypoint.import_command("/tmp/x.bento") == ["bentoml", "import", "/tmp/x.bento"]


@pytest.mark.parametrize(("tag", "port"), [("", 3000), ("no-version", 3000), ("a:b", 0)])
def test_serve_command_rejects_bad_input(tag: str, port: int) -> None:
    with pytest.raises(InvalidParameterError):
        serving_entrypoint.serve_command(tag, port=port)


@pytest.mark.parametrize("uri", ["", "s3://bucket/x.bento", "ftp://host/x.bento"])
def test_settings_rejects_unfetchable_uris(uri: str) -> None:
    with pytest.raises(InvalidParameterError, match="BENTO_URI"):
        serving_entrypoint.settings({"BENTO_URI": uri, "BENTO_TAG": "a:b"})


def test_download_over_http_from_a_real_local_server(tmp_path: Path) -> None:
    served = tmp_path / "served"
    served.mkdir()
    (served / "planets.bento").write_bytes(b"bento-archive-bytes")
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        dest = tmp_path / "dest"
        dest.mkdir()
        url = f"http://127.0.0.1:{server.server_address[1]}/planets.bento"
        got = serving_entrypoint.download(url, dest)
    finally:
        server.shutdown()
        server.server_close()
    assert got == dest / "planets.bento"
    assert got.read_bytes() == b"bento-archive-bytes"


def test_download_local_path_and_missing_file(tmp_path: Path) -> None:
    archive = tmp_path / "m.bento"
    archive.write_bytes(b"x")
    assert serving_entrypoint.download(f"file://{archive}", tmp_path) == archive
    with pytest.raises(InvalidParameterError, match="existing .bento file"):
        serving_entrypoint.download(str(tmp_path / "missing.bento"), tmp_path)


def test_main_imports_then_execs_serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The archive is unpacked once, in process; ``os.execvp`` is replaced (it would replace pytest)."""
    archive = tmp_path / "m.bento"
    archive.write_bytes(b"x")
    ran: list[list[str]] = []

    def fake_import(path: Path, home: Path) -> str:
        ran.append(["import", str(path), str(home)])
        (home / "bentos" / "planets_classifier" / "v1").mkdir(parents=True)
        (home / "bentos" / "planets_classifier" / "v1" / "bento.yaml").write_text(
            "name: planets_classifier\n"
        )
        return "planets_classifier:v1"

    def fake_exec(file: str, args: list[str]) -> None:
        ran.append(["exec", *args])

    monkeypatch.setattr(serving_entrypoint, "import_archive", fake_import)
    monkeypatch.setattr(serving_entrypoint.os, "execvp", fake_exec)
    home = tmp_path / "home"
    env = {"BENTO_URI": str(archive), "BENTO_TAG": "planets_classifier:v1", "BENTOML_HOME": str(home)}
    serving_entrypoint.main(env)
    serve = ["exec", "bentoml", "serve", "planets_classifier:v1", "--host", "0.0.0.0", "--port", "3000"]
    assert ran == [["import", str(archive), str(home)], serve]
    ran.clear()
    serving_entrypoint.main(env)  # a restart on the same emptyDir: already in the store
    assert ran == [serve]
