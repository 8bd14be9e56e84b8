"""Kubernetes objects for one served bento, built by pure functions returning dicts.

The serving pod runs the one pinned serving image; at start it fetches the bento archive
named by ``BENTO_URI``, imports it and runs ``bentoml serve`` (see
``planets_mlops.serving_entrypoint``). So deploying a new model changes only two
environment variables of the pod template, and no image is built per model.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from planets_mlops.errors import InvalidParameterError

SERVING_PORT = 3000
FIELD_MANAGER = "planets-mlops"
SPEC_HASH_ANNOTATION = "planets-mlops.io/spec-hash"
BENTO_TAG_ANNOTATION = "planets-mlops.io/bento-tag"
TEMPLATE_HASH_LABEL = "planets-mlops.io/template-hash"
BENTOML_HOME = "/var/lib/bentoml"
KSERVE_API_VERSION = "serving.kserve.io/v1beta1"

# Docker reference grammar (distribution/reference), plus a mandatory tag or digest:
# an untagged reference means ``:latest``, which this project never deploys.
_DOMAIN = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?))*(?::[0-9]+)?"  # noqa: E501
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE_RE = re.compile(
    rf"^(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@(?P<digest>sha256:[a-f0-9]{64}))?$"
)
_DNS_LABEL_RE = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
_BENTO_TAG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,62})(?::[a-z0-9][a-z0-9._-]{0,127})$")
_QUANTITY_RE = re.compile(r"^\d+(?:\.\d+)?(?:m|k|Ki|M|Mi|G|Gi|T|Ti)?$")
_BENTO_URI_SCHEMES = ("gs://", "http://", "https://")


@dataclass(frozen=True)
class DeploySpec:
    """What to serve and how.

    Attributes:
        name: Name of the Deployment, Service or InferenceService (a DNS-1035 label).
        namespace: Namespace to serve in; the runner's Role allows ``planets-serving``.
        image: Serving image reference with an explicit tag or digest.
        bento_uri: Where the ``.bento`` archive lies (``gs://`` or ``http(s)://``).
        bento_tag: The bento's tag, ``name:version``.
        replicas: Number of serving pods.
        cpu_request, memory_request, cpu_limit, memory_limit: Container resources.
        service_account: Service account of the serving pods (reads the bucket).
        kserve: Serve through a KServe InferenceService instead of Deployment + Service.
        gcs_credentials_secret: Secret with a service-account key ``key.json`` for reading
            the bucket where Workload Identity is not available (kind); empty on GKE.
        monitoring_uri: ``gs://BUCKET/PREFIX`` the pods write prediction records to
            (``PLANETS_MONITORING_URI``; docs/monitoring.md); empty: no records.
        monitoring_sample: Share of served images recorded (``PLANETS_MONITORING_SAMPLE``).
        inbox_uri: ``gs://BUCKET/PREFIX`` of the production inbox (``PLANETS_INBOX``): the
            inputs the service rejected or was unsure of, for labelling; empty: off.
        inbox_max_items: Items the inbox holds at most (``PLANETS_INBOX_MAX_ITEMS``).
        inbox_min_margin: Answers with a top-two margin below this are kept
            (``PLANETS_INBOX_MIN_MARGIN``).
    """

    name: str
    namespace: str
    image: str
    bento_uri: str
    bento_tag: str
    replicas: int = 1
    cpu_request: str = "500m"
    memory_request: str = "1Gi"
    cpu_limit: str = "2"
    memory_limit: str = "2Gi"
    service_account: str = "planets-serving"
    kserve: bool = False
    gcs_credentials_secret: str = ""
    monitoring_uri: str = ""
    monitoring_sample: float = 1.0
    inbox_uri: str = ""
    inbox_max_items: int = 1000
    inbox_min_margin: float = 0.2


def validate_image(image: str) -> str:
    """Check an image reference before anything is applied.

    Args:
        image: e.g. ``europe-docker.pkg.dev/proj/repo/serving:0.1.0``.

    Returns:
        The reference, unchanged.

    Raises:
        InvalidParameterError: malformed, untagged, or ``:latest``.
    """
    match = _IMAGE_RE.match(image or "")
    allowed = "a Docker image reference with an explicit tag or digest, e.g. registry/serving:0.1.0"
    if match is None:
        raise InvalidParameterError(
            "serving_image",
            image,
            allowed,
            "Fix the reference (lower-case repository, no spaces, one ':' before the tag), "
            "or leave serving_image empty to use components.images.SERVING_IMAGE.",
        )
    if not (match.group("tag") or match.group("digest")) or match.group("tag") == "latest":
        raise InvalidParameterError(
            "serving_image",
            image,
            allowed + " other than :latest",
            "Pin the tag to a released version (the package version) or a sha256 digest.",
        )
    return image


def validate_spec(spec: DeploySpec) -> None:
    """Validate every field at the boundary, before the API server is contacted.

    Raises:
        InvalidParameterError: naming the field, the bad value and the fix.
    """
    for field_name, value in (("name", spec.name), ("namespace", spec.namespace)):
        if not _DNS_LABEL_RE.match(value or ""):
            raise InvalidParameterError(
                field_name,
                value,
                "a DNS-1035 label: lower-case letters, digits and '-', "
                "starting with a letter, at most 63 characters",
                f"Pass e.g. {field_name}='planets-classifier'.",
            )
    if not spec.bento_uri:
        raise InvalidParameterError(
            "bento.uri",
            spec.bento_uri,
            "the URI of an exported .bento archive",
            "Connect deploy_model's `bento` input to the output of the packaging step.",
        )
    if not spec.bento_uri.startswith(_BENTO_URI_SCHEMES):
        raise InvalidParameterError(
            "bento.uri",
            spec.bento_uri,
            "a gs:// or http(s):// URI the serving pod can fetch",
            "Run the pipeline with a gs:// pipeline root (kfp-launcher ConfigMap "
            "defaultPipelineRoot) so artifacts live in a bucket the cluster can read.",
        )
    if not _BENTO_TAG_RE.match(spec.bento_tag or ""):
        raise InvalidParameterError(
            "bento.metadata['bento_tag']",
            spec.bento_tag,
            "a bento tag 'name:version' in lower case",
            "The packaging step must set metadata['bento_tag'] on its bento output.",
        )
    validate_image(spec.image)
    if not isinstance(spec.replicas, int) or not 1 <= spec.replicas <= 20:
        raise InvalidParameterError("replicas", spec.replicas, "an integer from 1 to 20")
    for field_name in ("cpu_request", "memory_request", "cpu_limit", "memory_limit"):
        value = getattr(spec, field_name)
        if not _QUANTITY_RE.match(str(value)):
            raise InvalidParameterError(
                field_name, value, "a Kubernetes quantity such as 500m, 2, 1Gi or 512Mi"
            )
    if not _DNS_LABEL_RE.match(spec.service_account or ""):
        raise InvalidParameterError("service_account", spec.service_account, "a DNS-1035 label")
    for field_name, example in (("monitoring_uri", "monitoring"), ("inbox_uri", "inbox")):
        value = getattr(spec, field_name)
        if value and not re.match(r"^gs://[a-z0-9][a-z0-9._-]{1,220}(/\S*)?$", value):
            raise InvalidParameterError(
                field_name,
                value,
                "empty or gs://BUCKET/PREFIX",
                "The pods' file system is read-only and ephemeral: what they keep must go to a "
                f"bucket, e.g. gs://my-bucket/{example}.",
            )
    if spec.inbox_uri:
        # The service checks the same bounds at start; a bad one would crash-loop the pods.
        items = spec.inbox_max_items
        if isinstance(items, bool) or not isinstance(items, int) or items <= 0:
            raise InvalidParameterError("inbox_max_items", items, "a positive integer")
        margin = spec.inbox_min_margin
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 <= margin <= 1:
            raise InvalidParameterError("inbox_min_margin", margin, "a number in [0, 1]")
    sample = spec.monitoring_sample
    if isinstance(sample, bool) or not (isinstance(sample, (int, float)) and 0 < sample <= 1):
        raise InvalidParameterError(
            "monitoring_sample", sample, "a share in (0, 1]", "Use 1 to record every prediction."
        )
    if spec.gcs_credentials_secret and not _DNS_LABEL_RE.match(spec.gcs_credentials_secret):
        raise InvalidParameterError(
            "gcs_credentials_secret",
            spec.gcs_credentials_secret,
            "empty or a Secret name",
            "Leave it empty on GKE (Workload Identity); on kind use 'gcs-credentials'.",
        )


def labels(spec: DeploySpec) -> dict[str, str]:
    """Labels shared by every object of one served model (the selector is a subset)."""
    return {
        "app.kubernetes.io/name": spec.name,
        "app.kubernetes.io/component": "serving",
        "app.kubernetes.io/part-of": "planets-mlops",
        "app.kubernetes.io/managed-by": FIELD_MANAGER,
    }


def selector(spec: DeploySpec) -> dict[str, str]:
    """Immutable Deployment selector: never include anything that changes per model."""
    return {"app.kubernetes.io/name": spec.name, "app.kubernetes.io/component": "serving"}


def stable_hash(obj: Any, length: int = 16) -> str:
    """Hash of a JSON-able value, independent of key order."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


GCS_KEY_DIR = "/var/secrets/google"


def container(spec: DeploySpec, name: str = "bento") -> dict[str, Any]:
    """The serving container: probes, resources, read-only root filesystem."""
    env = [
        {"name": "BENTO_URI", "value": spec.bento_uri},
        {"name": "BENTO_TAG", "value": spec.bento_tag},
        {"name": "BENTOML_HOME", "value": BENTOML_HOME},
        # Libraries write caches under $HOME; the root filesystem is read-only.
        {"name": "HOME", "value": "/tmp"},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "bentoml-home", "mountPath": BENTOML_HOME},
    ]
    if spec.monitoring_uri:
        env.append({"name": "PLANETS_MONITORING_URI", "value": spec.monitoring_uri})
        env.append({"name": "PLANETS_MONITORING_SAMPLE", "value": f"{float(spec.monitoring_sample):g}"})
    if spec.inbox_uri:
        env.append({"name": "PLANETS_INBOX", "value": spec.inbox_uri})
        env.append({"name": "PLANETS_INBOX_MAX_ITEMS", "value": str(int(spec.inbox_max_items))})
        env.append({"name": "PLANETS_INBOX_MIN_MARGIN", "value": f"{float(spec.inbox_min_margin):g}"})
    if spec.gcs_credentials_secret:
        env.append({"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": f"{GCS_KEY_DIR}/key.json"})
        mounts.append({"name": "gcs-credentials", "mountPath": GCS_KEY_DIR, "readOnly": True})
    return {
        "name": name,
        "image": spec.image,
        "imagePullPolicy": "IfNotPresent",
        "env": env,
        "ports": [{"name": "http", "containerPort": SERVING_PORT, "protocol": "TCP"}],
        # Download + import happen before the server listens: give startup its own budget
        # so liveness does not kill a slow first start.
        "startupProbe": {
            "httpGet": {"path": "/livez", "port": SERVING_PORT},
            "periodSeconds": 5,
            "failureThreshold": 60,
        },
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": SERVING_PORT},
            "periodSeconds": 5,
            "timeoutSeconds": 3,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": "/livez", "port": SERVING_PORT},
            "periodSeconds": 10,
            "timeoutSeconds": 3,
            "failureThreshold": 3,
        },
        "resources": {
            "requests": {"cpu": spec.cpu_request, "memory": spec.memory_request},
            "limits": {"cpu": spec.cpu_limit, "memory": spec.memory_limit},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": mounts,
    }


def pod_spec_fields(spec: DeploySpec) -> dict[str, Any]:
    """Pod-level fields shared by the Deployment template and the KServe predictor."""
    volumes: list[dict[str, Any]] = [
        {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
        {"name": "bentoml-home", "emptyDir": {"sizeLimit": "4Gi"}},
    ]
    if spec.gcs_credentials_secret:
        volumes.append({"name": "gcs-credentials", "secret": {"secretName": spec.gcs_credentials_secret}})
    return {
        "serviceAccountName": spec.service_account,
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "runAsGroup": 10001,
            "fsGroup": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumes": volumes,
    }


def template_hash(spec: DeploySpec) -> str:
    """Hash of everything that, when changed, needs new pods."""
    return stable_hash({"container": container(spec), "pod": pod_spec_fields(spec)})


def deployment(spec: DeploySpec) -> dict[str, Any]:
    """The Deployment: rolling update that keeps old pods until new ones are ready."""
    pod_labels = {**labels(spec), TEMPLATE_HASH_LABEL: template_hash(spec)}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": spec.name,
            "namespace": spec.namespace,
            "labels": labels(spec),
            "annotations": {BENTO_TAG_ANNOTATION: spec.bento_tag},
        },
        "spec": {
            "replicas": spec.replicas,
            "revisionHistoryLimit": 5,
            "progressDeadlineSeconds": 600,
            "selector": {"matchLabels": selector(spec)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {
                    "labels": pod_labels,
                    "annotations": {BENTO_TAG_ANNOTATION: spec.bento_tag},
                },
                "spec": {**pod_spec_fields(spec), "containers": [container(spec)]},
            },
        },
    }


def service(spec: DeploySpec) -> dict[str, Any]:
    """ClusterIP Service in front of the Deployment's pods."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": spec.name, "namespace": spec.namespace, "labels": labels(spec)},
        "spec": {
            "type": "ClusterIP",
            "selector": selector(spec),
            "ports": [{"name": "http", "port": SERVING_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def inference_service(spec: DeploySpec) -> dict[str, Any]:
    """KServe InferenceService with the same container (raw deployment mode, no Knative)."""
    return {
        "apiVersion": KSERVE_API_VERSION,
        "kind": "InferenceService",
        "metadata": {
            "name": spec.name,
            "namespace": spec.namespace,
            "labels": {**labels(spec), TEMPLATE_HASH_LABEL: template_hash(spec)},
            "annotations": {
                "serving.kserve.io/deploymentMode": "RawDeployment",
                BENTO_TAG_ANNOTATION: spec.bento_tag,
            },
        },
        "spec": {
            "predictor": {
                "minReplicas": spec.replicas,
                "maxReplicas": max(spec.replicas, 1),
                **pod_spec_fields(spec),
                # KServe requires this container name for a custom predictor.
                "containers": [container(spec, name="kserve-container")],
            }
        },
    }


def desired_objects(spec: DeploySpec) -> list[dict[str, Any]]:
    """Every object to apply, primary object first, each carrying the spec hash.

    The hash covers all objects, so applying the same bento with the same settings twice
    is detected as "no change" by comparing one annotation.
    """
    objects = [inference_service(spec)] if spec.kserve else [deployment(spec), service(spec)]
    digest = stable_hash(objects)
    for obj in objects:
        obj["metadata"].setdefault("annotations", {})[SPEC_HASH_ANNOTATION] = digest
    return objects


def service_url(spec: DeploySpec) -> str:
    """In-cluster URL of the plain Service (Deployment mode)."""
    return f"http://{spec.name}.{spec.namespace}.svc.cluster.local:{SERVING_PORT}"


def pod_selector(spec: DeploySpec) -> str:
    """Label selector of the pods of the revision being rolled out."""
    owner = (
        f"serving.kserve.io/inferenceservice={spec.name}"
        if spec.kserve
        else f"app.kubernetes.io/name={spec.name}"
    )
    return f"{owner},{TEMPLATE_HASH_LABEL}={template_hash(spec)}"
