"""Deploy a served bento: apply it, wait for its rollout, smoke-test it, roll back on failure.

The parts of a deploy live in their own modules: :mod:`.cluster` (the API boundary, five
calls, and ``KubernetesApi``), :mod:`.lease` (one deploy of a target at a time),
:mod:`.rollout` (wait, tell a broken pod from a slow one, roll back, check the objects are
still ours) and :mod:`.smoke` (one real image to the new endpoint). Tests replace the two
boundaries only: ``ClusterApi`` and the ``predict`` callable.
"""

from __future__ import annotations

import logging
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from planets_mlops.deploy import manifests
from planets_mlops.deploy.cluster import ClusterApi, Json, KubernetesApi
from planets_mlops.deploy.lease import (
    LEASE_MARGIN_S,
    acquire_lease,
    release_lease,
)
from planets_mlops.deploy.manifests import DeploySpec
from planets_mlops.deploy.rollout import (
    SupersededError,
    check_still_ours,
    endpoint_of,
    revision_of,
    rollback,
    rollout_done,
    wait_for_rollout,
)
from planets_mlops.deploy.smoke import Predict, check_prediction, http_predict, smoke_image
from planets_mlops.errors import DeployError, InvalidParameterError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeployResult:
    """Where the model is served now.

    Attributes:
        endpoint_url: In-cluster base URL (POST ``/predict``).
        revision: Deployment revision (or InferenceService generation) now serving.
        bento_tag: Tag of the bento served.
        changed: False when the same spec was already deployed and healthy.
        spec_hash: Hash of the applied objects (annotation ``planets-mlops.io/spec-hash``).
        kind: ``Deployment`` or ``InferenceService``.
    """

    endpoint_url: str
    revision: str
    bento_tag: str
    changed: bool
    spec_hash: str
    kind: str


def deploy(
    spec: DeploySpec,
    api: ClusterApi,
    timeout_s: float = 300.0,
    predict: Predict = http_predict,
    image: bytes | None = None,
    poll_s: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> DeployResult:
    """Serve ``spec`` and prove it answers, or leave the cluster as it was.

    Steps: validate; read the current objects; if the same spec hash is already deployed
    and healthy, return without applying; server-side apply; wait for the rollout; send
    one real prediction. On any failure after the apply, roll back and raise.

    Args:
        spec: What to serve.
        api: The Kubernetes API boundary (``KubernetesApi`` in a cluster).
        timeout_s: Longest wait for the rollout.
        predict: ``(base_url, jpeg, timeout_s) -> answer``; ``http_predict`` by default.
        image: JPEG for the smoke test; ``smoke_image()`` when None.
        poll_s: Seconds between two rollout status reads.
        clock: Monotonic time source for the rollout deadline (tests pass a fake).
        sleep: Waits between polls (tests pass a fake that advances ``clock``).

    Returns:
        Where the model is served.

    Raises:
        InvalidParameterError: a bad input, before anything is applied.
        DeployError: the rollout or smoke test failed; the message says why and what the
            rollback did.
    """
    started = time.monotonic()
    manifests.validate_spec(spec)
    if timeout_s <= 0:
        raise InvalidParameterError("timeout_s", timeout_s, "a positive number of seconds")
    desired = manifests.desired_objects(spec)
    holder = f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
    acquire_lease(api, spec, holder, int(timeout_s) + LEASE_MARGIN_S, timeout_s, poll_s, clock, sleep)
    try:
        return _deploy_holding_lease(
            spec, api, desired, timeout_s, predict, image, poll_s, clock, sleep, started
        )
    finally:
        release_lease(api, spec, holder)


def _deploy_holding_lease(
    spec: DeploySpec,
    api: ClusterApi,
    desired: list[Json],
    timeout_s: float,
    predict: Predict,
    image: bytes | None,
    poll_s: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    started: float,
) -> DeployResult:
    digest = desired[0]["metadata"]["annotations"][manifests.SPEC_HASH_ANNOTATION]
    kind = desired[0]["kind"]
    previous = {obj["kind"]: api.get(obj["kind"], spec.namespace, spec.name) for obj in desired}

    current = previous[kind]
    if current is not None:
        current_hash = (current.get("metadata", {}).get("annotations") or {}).get(
            manifests.SPEC_HASH_ANNOTATION
        )
        if current_hash == digest and rollout_done(spec, current)[0]:
            logger.info(
                "%s %s/%s already serves %s (spec %s): nothing to apply",
                kind,
                spec.namespace,
                spec.name,
                spec.bento_tag,
                digest,
            )
            return DeployResult(
                endpoint_of(spec, current), revision_of(current), spec.bento_tag, False, digest, kind
            )

    logger.info(
        "Applying %s %s/%s for bento %s (spec %s, previous revision %s)",
        kind,
        spec.namespace,
        spec.name,
        spec.bento_tag,
        digest,
        revision_of(current) or "none",
    )
    try:
        for obj in desired:
            api.apply(obj)
        primary = wait_for_rollout(api, spec, timeout_s, poll_s, clock, sleep, digest=digest)
        url = endpoint_of(spec, primary)
        answer = predict(url, image if image is not None else smoke_image(), 30.0)
        predicted = check_prediction(answer)
        # The answer must have come from this deploy's pods, not from a later writer's.
        check_still_ours(spec, api.get(kind, spec.namespace, spec.name), digest, "during the smoke test")
    except SupersededError as exc:
        logger.warning("Deploy of %s superseded: %s", spec.bento_tag, exc)
        raise
    except Exception as exc:
        logger.warning("Deploy of %s failed (%s); rolling back", spec.bento_tag, exc)
        try:
            undone = rollback(api, desired, previous)
        except Exception as rollback_exc:  # noqa: BLE001 - report both; the first failure is the cause
            raise DeployError(
                f"Deploy of bento {spec.bento_tag} failed: {exc}; ROLLBACK ALSO FAILED: "
                f"{rollback_exc}. Fix by hand: `kubectl -n {spec.namespace} rollout undo "
                f"deployment/{spec.name}` and re-apply what could not be restored."
            ) from exc
        raise DeployError(
            f"Deploy of bento {spec.bento_tag} failed and was rolled back ({undone}): {exc}"
        ) from exc

    result = DeployResult(url, revision_of(primary), spec.bento_tag, True, digest, kind)
    logger.info(
        "Serving %s at %s revision %s (smoke prediction %s) in %.1f s",
        spec.bento_tag,
        url,
        result.revision,
        predicted,
        time.monotonic() - started,
    )
    return result


def deploy_bento(
    bento_uri: str,
    bento_metadata: dict[str, Any],
    serving_image: str,
    name: str = "planets-classifier",
    namespace: str = "planets-serving",
    replicas: int = 1,
    cpu_request: str = "500m",
    memory_request: str = "1Gi",
    cpu_limit: str = "2",
    memory_limit: str = "2Gi",
    timeout_s: float = 300.0,
    kserve: bool = False,
    gcs_credentials_secret: str = "",
    monitoring_uri: str = "",
    monitoring_sample: float = 1.0,
    inbox_uri: str = "",
    inbox_max_items: int = 1000,
    inbox_min_margin: float = 0.2,
    api: ClusterApi | None = None,
    predict: Predict | None = None,
) -> dict[str, Any]:
    """What the ``deploy_model`` component calls: artifact fields in, endpoint metadata out.

    Args:
        bento_uri: The bento artifact's ``.uri``.
        bento_metadata: The bento artifact's metadata; ``bento_tag`` is required.
        serving_image: Serving image reference (tagged).
        name: Name of the Deployment/InferenceService, its Service and labels.
        namespace: Namespace to serve in.
        replicas: Pods to run.
        cpu_request: CPU request of each pod (Kubernetes quantity, e.g. ``"500m"``).
        memory_request: Memory request of each pod (e.g. ``"1Gi"``).
        cpu_limit: CPU limit of each pod.
        memory_limit: Memory limit of each pod.
        timeout_s: Longest wait for the rollout (see ``deploy``).
        kserve: Serve as a KServe InferenceService instead of a Deployment + Service.
        gcs_credentials_secret: Secret with a service-account key ``key.json`` for reading
            the bucket where Workload Identity is not available (kind); ``""`` on GKE.
        monitoring_uri: ``gs://BUCKET/PREFIX`` for the service's prediction records; ``""``: none.
        monitoring_sample: Share of served images recorded, in (0, 1].
        inbox_uri: ``gs://BUCKET/PREFIX`` of the production inbox; ``""``: off.
        inbox_max_items: Items the inbox holds at most.
        inbox_min_margin: Answers with a top-two margin below this are kept.
        api: Kubernetes boundary; ``KubernetesApi()`` (in-cluster config) when None.
        predict: Smoke-test call; ``http_predict`` when None.

    Returns:
        Metadata for the ``endpoint`` artifact: endpoint_url, revision, bento_tag, changed,
        spec_hash, kind, namespace, name, serving_image.
    """
    spec = DeploySpec(
        name=name,
        namespace=namespace,
        image=serving_image,
        bento_uri=bento_uri or "",
        bento_tag=str((bento_metadata or {}).get("bento_tag", "")),
        replicas=int(replicas),
        cpu_request=cpu_request,
        memory_request=memory_request,
        cpu_limit=cpu_limit,
        memory_limit=memory_limit,
        kserve=bool(kserve),
        gcs_credentials_secret=gcs_credentials_secret,
        monitoring_uri=monitoring_uri.strip(),
        monitoring_sample=monitoring_sample,
        inbox_uri=inbox_uri.strip(),
        inbox_max_items=inbox_max_items,
        inbox_min_margin=inbox_min_margin,
    )
    manifests.validate_spec(spec)  # fail on bad input before connecting to any cluster
    result = deploy(
        spec,
        api if api is not None else KubernetesApi(),
        timeout_s=timeout_s,
        predict=predict if predict is not None else http_predict,
    )
    return {
        "endpoint_url": result.endpoint_url,
        "revision": result.revision,
        "bento_tag": result.bento_tag,
        "changed": result.changed,
        "spec_hash": result.spec_hash,
        "kind": result.kind,
        "namespace": namespace,
        "name": name,
        "serving_image": serving_image,
    }


def deploy_model(
    bento_uri: str,
    bento_metadata: dict[str, Any],
    serving_image: str,
    registered_model_name: str = "",
    registered_version: str = "",
    **settings: Any,
) -> dict[str, Any]:
    """What the ``deploy_model`` component calls: deploy the bento, then record the release.

    Args:
        bento_uri: The bento artifact's ``.uri``.
        bento_metadata: The bento artifact's metadata; ``bento_tag`` is required.
        serving_image: Serving image reference (tagged).
        registered_model_name: With ``registered_version``, the deployed revision is added to
            that version's release record (``MLFLOW_TRACKING_URI``); a registry error then is
            logged, not raised: the bento serves.
        registered_version: The registered version this bento is; empty or ``untracked``
            (not a number): nothing is recorded.
        **settings: The other arguments of :func:`deploy_bento` (name, namespace, resources...).

    Returns:
        Metadata for the ``endpoint`` artifact (see :func:`deploy_bento`).
    """
    info = deploy_bento(bento_uri, bento_metadata, serving_image, **settings)
    if registered_model_name and registered_version.isdigit():
        from planets_mlops.registry.release import record_deployment_safely

        record_deployment_safely(registered_model_name, registered_version, info)
    return info
