"""Apply a served bento, wait for its rollout, smoke-test it, roll back on any failure.

Everything that talks to the API server goes through ``ClusterApi`` (five calls), and the
one HTTP call to the new endpoint through a ``predict`` callable, so tests replace only
those two boundaries. ``KubernetesApi`` is the real implementation (server-side apply
with field manager ``planets-mlops`` and forced conflicts).

Deploys of one target are serialised by a ``coordination.k8s.io`` Lease
(``<name>-deploy``) taken with a create or a resourceVersion precondition; a deploy that
finds it held waits, then fails without applying anything. While it waits for the rollout
and after the smoke test, a deploy checks that the object still carries its own spec hash,
so it never reports success on someone else's rollout; a rollback tries every object even
when one of them fails.
"""

from __future__ import annotations

import io
import json
import logging
import math
import socket
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from planets_mlops.deploy import manifests
from planets_mlops.deploy.manifests import DeploySpec
from planets_mlops.errors import DeployError, InvalidParameterError

logger = logging.getLogger(__name__)

API_VERSIONS = {
    "Deployment": "apps/v1",
    "Service": "v1",
    "Pod": "v1",
    "InferenceService": manifests.KSERVE_API_VERSION,
    "Lease": "coordination.k8s.io/v1",
}
LEASE_SUFFIX = "-deploy"
# The lease outlives the longest deploy: rollout timeout + smoke test + rollback.
LEASE_MARGIN_S = 120
# Waiting reasons after which a pod will not become ready by itself.
FATAL_WAITING_REASONS = frozenset(
    {"InvalidImageName", "CreateContainerConfigError", "CreateContainerError", "RunContainerError"}
)
# Waiting reasons that often pass by themselves: a registry or node hiccup during the pull,
# a first start that fails while the pod's identity or the bucket is not ready yet. The
# rollout waits for them within its deadline (and names them when it runs out) instead of
# rolling back at first sight; a container that crashed CRASHES_BEFORE_FAILING times is
# taken as broken.
TRANSIENT_WAITING_REASONS = frozenset({"CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull"})
CRASHES_BEFORE_FAILING = 3
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
# Server-populated fields that must not be sent back when re-applying a previous object.
_SERVER_METADATA = (
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "managedFields",
    "generation",
    "selfLink",
    "ownerReferences",
)
_SERVER_ANNOTATIONS = (REVISION_ANNOTATION, "kubectl.kubernetes.io/last-applied-configuration")

Predict = Callable[[str, bytes, float], dict[str, Any]]
Json = dict[str, Any]


class ClusterConflict(Exception):
    """The API server refused a write: the object exists, or its resourceVersion moved."""


class SupersededError(DeployError):
    """Another writer replaced the object during this deploy: it is theirs now, not rolled back."""


class ClusterApi(Protocol):
    """The only calls deploy() makes to the Kubernetes API server."""

    def get(self, kind: str, namespace: str, name: str) -> Json | None:
        """The object as JSON (camelCase keys, with status), or None if absent."""

    def apply(self, obj: Json) -> Json:
        """Server-side apply ``obj`` (field manager planets-mlops, force conflicts).

        A ``metadata.resourceVersion`` in ``obj`` is a precondition: ``ClusterConflict``
        when the stored object has another one.
        """

    def create(self, obj: Json) -> Json:
        """Create ``obj``; ``ClusterConflict`` when it exists already."""

    def delete(self, kind: str, namespace: str, name: str) -> None:
        """Delete an object; absent is fine."""

    def list_pods(self, namespace: str, label_selector: str) -> list[Json]:
        """Pods matching a label selector, as JSON."""


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


class KubernetesApi:
    """``ClusterApi`` over the official ``kubernetes`` client's dynamic client."""

    def __init__(self, api_client: Any = None, discovery_cache: str | None = None) -> None:
        """Use ``api_client``, else in-cluster config, else the local kubeconfig.

        Args:
            api_client: A configured ``kubernetes.client.ApiClient``.
            discovery_cache: File for the dynamic client's API discovery cache
                (default: one per API host in the temp directory).
        """
        from kubernetes import client, config  # type: ignore[import-untyped]
        from kubernetes.dynamic import DynamicClient  # type: ignore[import-untyped]

        if api_client is None:
            try:
                config.load_incluster_config()
            except config.ConfigException:
                config.load_kube_config()
            api_client = client.ApiClient()
        self._dynamic = DynamicClient(api_client, cache_file=discovery_cache)

    def _resource(self, kind: str) -> Any:
        return self._dynamic.resources.get(api_version=API_VERSIONS[kind], kind=kind)

    def get(self, kind: str, namespace: str, name: str) -> Json | None:
        """Read one object.

        Args:
            kind: Kubernetes kind, a key of ``API_VERSIONS`` (e.g. ``"Deployment"``).
            namespace: Namespace of the object.
            name: Name of the object.

        Returns:
            The object as a dict, or None when it does not exist.
        """
        from kubernetes.dynamic.exceptions import NotFoundError  # type: ignore[import-untyped]

        try:
            return self._resource(kind).get(name=name, namespace=namespace).to_dict()
        except NotFoundError:
            return None

    def apply(self, obj: Json) -> Json:
        """Server-side apply ``obj`` as the project's field manager, taking over conflicting fields.

        Args:
            obj: A complete manifest with ``kind`` and ``metadata.name``/``metadata.namespace``.

        Returns:
            The object as the API server stored it.
        """
        from kubernetes.dynamic.exceptions import ConflictError  # type: ignore[import-untyped]

        meta = obj["metadata"]
        try:
            result = self._resource(obj["kind"]).server_side_apply(
                body=obj,
                name=meta["name"],
                namespace=meta["namespace"],
                field_manager=manifests.FIELD_MANAGER,
                force_conflicts=True,
            )
        except ConflictError as exc:  # a resourceVersion precondition failed
            raise ClusterConflict(str(exc)) from exc
        return result.to_dict()

    def create(self, obj: Json) -> Json:
        """Create ``obj`` (fails when it exists).

        Args:
            obj: A complete manifest with ``kind`` and ``metadata.name``/``metadata.namespace``.

        Returns:
            The object as the API server stored it.

        Raises:
            ClusterConflict: the object exists already.
        """
        from kubernetes.dynamic.exceptions import ConflictError  # type: ignore[import-untyped]

        try:
            result = self._resource(obj["kind"]).create(body=obj, namespace=obj["metadata"]["namespace"])
        except ConflictError as exc:
            raise ClusterConflict(str(exc)) from exc
        return result.to_dict()

    def delete(self, kind: str, namespace: str, name: str) -> None:
        """Delete one object; an object that is already gone is not an error.

        Args:
            kind: Kubernetes kind, a key of ``API_VERSIONS``.
            namespace: Namespace of the object.
            name: Name of the object.
        """
        from kubernetes.dynamic.exceptions import NotFoundError  # type: ignore[import-untyped]

        try:
            self._resource(kind).delete(name=name, namespace=namespace)
        except NotFoundError:
            pass

    def list_pods(self, namespace: str, label_selector: str) -> list[Json]:
        """The pods of ``namespace`` that match ``label_selector``.

        Args:
            namespace: Namespace to list.
            label_selector: Kubernetes label selector, e.g. ``"app=planets-classifier"``.

        Returns:
            The pods as dicts (empty when none match).
        """
        pods = self._resource("Pod").get(namespace=namespace, label_selector=label_selector)
        return list(pods.to_dict().get("items", []))


def deployment_status(obj: Json | None, replicas: int) -> tuple[bool, str]:
    """Whether a Deployment finished rolling out, as ``kubectl rollout status`` judges.

    Returns:
        (done, human-readable state).

    Raises:
        DeployError: the controller reports ProgressDeadlineExceeded.
    """
    if obj is None:
        return False, "Deployment not found"
    status = obj.get("status") or {}
    generation = obj.get("metadata", {}).get("generation", 0)
    if status.get("observedGeneration", 0) < generation:
        return False, "waiting for the controller to observe the new spec"
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            raise DeployError(f"Deployment exceeded its progress deadline: {cond.get('message', '')}")
    updated = status.get("updatedReplicas", 0)
    total = status.get("replicas", 0)
    available = status.get("availableReplicas", 0)
    if updated < replicas:
        return False, f"{updated} of {replicas} new replicas updated"
    if total > updated:
        return False, f"{total - updated} old replicas pending termination"
    if available < updated:
        return False, f"{available} of {updated} updated replicas available"
    return True, f"{available} of {replicas} replicas available"


def inference_service_status(obj: Json | None) -> tuple[bool, str]:
    """Whether an InferenceService reports Ready for its latest generation."""
    if obj is None:
        return False, "InferenceService not found"
    status = obj.get("status") or {}
    generation = obj.get("metadata", {}).get("generation", 0)
    if status.get("observedGeneration", generation) < generation:
        return False, "waiting for KServe to observe the new spec"
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Ready":
            if cond.get("status") == "True":
                return True, "Ready"
            return (
                False,
                f"Ready={cond.get('status')}: {cond.get('reason', '')} {cond.get('message', '')}".strip(),
            )
    return False, "no Ready condition yet"


def fatal_pod_reason(pods: list[Json], transient: bool = False) -> str | None:
    """The first reason why a pod of the new revision will never become ready, if any.

    A pull error, or a crash loop of fewer than :data:`CRASHES_BEFORE_FAILING` restarts,
    is not fatal: it is reported only with ``transient`` (the reason a rollout that timed
    out was still waiting for).
    """
    for pod in pods:
        pod_name = pod.get("metadata", {}).get("name", "?")
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason")
            crashed_often = (
                reason == "CrashLoopBackOff" and int(cs.get("restartCount") or 0) >= CRASHES_BEFORE_FAILING
            )
            if (
                reason in FATAL_WAITING_REASONS
                or crashed_often
                or (transient and reason in TRANSIENT_WAITING_REASONS)
            ):
                detail = waiting.get("message", "")
                last = (cs.get("lastState") or {}).get("terminated") or {}
                if last:
                    detail += (
                        f" (last exit code {last.get('exitCode')}, "
                        f"reason {last.get('reason', '?')}, restarts {cs.get('restartCount', 0)})"
                    )
                return f"pod {pod_name} container {cs.get('name')} is {reason}{': ' + detail.strip() if detail.strip() else ''}"  # noqa: E501
    return None


def restorable(previous: Json) -> Json:
    """An apply body that puts ``previous`` back: its spec and labels, minus server fields."""
    meta = previous.get("metadata", {})
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in _SERVER_ANNOTATIONS}
    clean_meta = {k: v for k, v in meta.items() if k not in _SERVER_METADATA}
    clean_meta["annotations"] = annotations
    return {
        "apiVersion": previous["apiVersion"],
        "kind": previous["kind"],
        "metadata": clean_meta,
        "spec": previous.get("spec", {}),
    }


def smoke_image(size: int = 128) -> bytes:
    """A small planet-like JPEG made in-process: an orange disc on black."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (size, size), (0, 0, 0))
    margin = size // 6
    ImageDraw.Draw(img).ellipse((margin, margin, size - margin, size - margin), fill=(200, 120, 60))
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def http_predict(base_url: str, image: bytes, timeout_s: float) -> dict[str, Any]:
    """POST ``image`` as multipart field ``image`` to ``{base_url}/predict``.

    Raises:
        DeployError: the endpoint is unreachable or answers non-2xx or non-JSON.
    """
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="smoke.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + image
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        base_url.rstrip("/") + "/predict",
        data=body,
        method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return dict(json.loads(response.read()))
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:300].decode(errors="replace")
        raise DeployError(f"POST {request.full_url} answered HTTP {exc.code}: {detail}") from exc
    except (urllib.error.URLError, TimeoutError, json.JSONDecodeError, ValueError) as exc:
        raise DeployError(f"POST {request.full_url} failed: {exc}") from exc


def check_prediction(answer: Any) -> str:
    """Validate the /predict answer shape; return the predicted (closest) class.

    A model with an open-set guard answers ``"prediction": null`` for an image it does not
    recognise; its ``closest_class`` is then the class checked.

    Raises:
        DeployError: not {"prediction": str, "probabilities": {class: float}} with every
            probability a finite number in [0, 1] and their sum ~1 (a diverged model
            answers NaN, which no sum comparison catches); when not recognised, a null
            prediction with a ``closest_class`` string.
    """
    if not isinstance(answer, dict):
        raise DeployError(f"smoke test: /predict answered {answer!r}, expected a 'prediction' string")
    predicted = answer.get("prediction")
    if predicted is None and answer.get("recognised") is False:
        predicted = answer.get("closest_class")
    if not isinstance(predicted, str):
        raise DeployError(f"smoke test: /predict answered {answer!r}, expected a 'prediction' string")
    probabilities = answer.get("probabilities")
    if not isinstance(probabilities, dict) or not probabilities:
        raise DeployError(f"smoke test: /predict answered no 'probabilities' map: {answer!r}")
    bad = {
        name: p
        for name, p in probabilities.items()
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not math.isfinite(p) or not 0 <= p <= 1
    }
    if bad:
        raise DeployError(
            f"smoke test: probabilities must be finite numbers in [0, 1]; got {bad!r} "
            "(a model with non-finite weights answers NaN: retrain with a lower train_lr)"
        )
    total = sum(float(p) for p in probabilities.values())
    if not abs(total - 1.0) <= 0.01 or predicted not in probabilities:
        raise DeployError(
            f"smoke test: probabilities sum to {total:.3f} or miss the predicted class "
            f"{predicted!r}: {answer!r}"
        )
    return predicted


def _revision(obj: Json | None) -> str:
    if obj is None:
        return ""
    meta = obj.get("metadata", {})
    if obj.get("kind") == "Deployment":
        return str((meta.get("annotations") or {}).get(REVISION_ANNOTATION, ""))
    if obj.get("kind") == "InferenceService":
        return str(meta.get("generation", ""))
    return ""


def _endpoint(spec: DeploySpec, primary: Json | None) -> str:
    if spec.kserve:
        status = (primary or {}).get("status") or {}
        url = (status.get("address") or {}).get("url") or status.get("url")
        return str(url or f"http://{spec.name}-predictor.{spec.namespace}.svc.cluster.local")
    return manifests.service_url(spec)


def _rollout_done(spec: DeploySpec, primary: Json | None) -> tuple[bool, str]:
    if spec.kserve:
        return inference_service_status(primary)
    return deployment_status(primary, spec.replicas)


def wait_for_rollout(
    api: ClusterApi,
    spec: DeploySpec,
    timeout_s: float,
    poll_s: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    digest: str = "",
) -> Json:
    """Poll until the new revision is fully available.

    Args:
        api: The Kubernetes API boundary.
        spec: What is being served.
        timeout_s: Longest wait.
        poll_s: Seconds between two reads.
        clock: Monotonic time source.
        sleep: Waits between polls.
        digest: This deploy's spec hash: fail as soon as the object carries another one.

    Returns:
        The primary object as last read.

    Raises:
        SupersededError: the object now carries another deploy's spec.
        DeployError: a pod of the new revision will never start (a bad image name or
            container config, or a crash loop of :data:`CRASHES_BEFORE_FAILING` restarts:
            the pod's reason is in the message), or ``timeout_s`` passed (with the pull
            error or crash the rollout was still waiting out, if any).
    """
    kind = "InferenceService" if spec.kserve else "Deployment"
    deadline = clock() + timeout_s
    state = "not read yet"
    while True:
        primary = api.get(kind, spec.namespace, spec.name)
        if digest:
            check_still_ours(spec, primary, digest, "during the rollout")
        done, state = _rollout_done(spec, primary)
        if done and primary is not None:
            return primary
        reason = fatal_pod_reason(api.list_pods(spec.namespace, manifests.pod_selector(spec)))
        if reason:
            raise DeployError(
                f"{kind} {spec.namespace}/{spec.name}: {reason}. Fix: read the pod's log with "
                f"`kubectl -n {spec.namespace} logs -l {manifests.pod_selector(spec)} --previous`; "
                f"check image={spec.image!r} and bento.uri={spec.bento_uri!r}."
            )
        if clock() >= deadline:
            waiting = fatal_pod_reason(
                api.list_pods(spec.namespace, manifests.pod_selector(spec)), transient=True
            )
            raise DeployError(
                f"{kind} {spec.namespace}/{spec.name} not ready after timeout_s={timeout_s:g}: "
                f"{state}{f'; {waiting}' if waiting else ''}. Fix: raise timeout_s if the model is "
                f"large, or see `kubectl -n {spec.namespace} describe {kind.lower()} {spec.name}`."
            )
        sleep(poll_s)


def rollback(api: ClusterApi, desired: list[Json], previous: dict[str, Json | None]) -> str:
    """Put back each object as read before the apply, or delete it if it did not exist.

    Every object is tried, even when one of them fails.

    Returns:
        What was done, for the error message.

    Raises:
        DeployError: one or more objects could not be restored; the message lists what
            was restored and what failed.
    """
    done, failed = [], []
    for obj in reversed(desired):
        kind, meta = obj["kind"], obj["metadata"]
        before = previous.get(kind)
        try:
            if before is None:
                api.delete(kind, meta["namespace"], meta["name"])
                done.append(f"deleted new {kind}")
            else:
                api.apply(restorable(before))
                rev = _revision(before)
                done.append(f"restored {kind}" + (f" revision {rev}" if rev else ""))
        except Exception as exc:  # noqa: BLE001 - go on with the other objects, report all
            failed.append(f"{kind}: {exc}")
    if failed:
        raise DeployError(
            f"could not restore {'; '.join(failed)}"
            + (f" ({', '.join(reversed(done))} done)" if done else "")
        )
    return ", ".join(reversed(done))


def check_still_ours(spec: DeploySpec, primary: Json | None, digest: str, when: str) -> None:
    """Raise when the served object no longer carries this deploy's spec hash.

    Raises:
        SupersededError: another writer replaced (or deleted) the object.
    """
    kind = "InferenceService" if spec.kserve else "Deployment"
    theirs = ((primary or {}).get("metadata", {}).get("annotations") or {}).get(
        manifests.SPEC_HASH_ANNOTATION
    )
    if theirs != digest:
        raise SupersededError(
            f"{kind} {spec.namespace}/{spec.name} was changed by another writer {when} "
            f"(spec hash {theirs or 'none'}, this deploy's {digest}): it serves their "
            "spec now, so this deploy neither claims it nor rolls it back. Check who else "
            f"deploys to it (`kubectl -n {spec.namespace} get {kind.lower()} {spec.name} "
            "--show-managed-fields -o yaml`), then deploy again."
        )


def _micro_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def lease_name(spec: DeploySpec) -> str:
    """Name of the Lease that serialises deploys of ``spec``'s target."""
    return f"{spec.name}{LEASE_SUFFIX}"


def acquire_lease(
    api: ClusterApi,
    spec: DeploySpec,
    holder: str,
    duration_s: int,
    wait_s: float,
    poll_s: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> None:
    """Take the deploy Lease of ``spec``'s target, waiting up to ``wait_s`` while it is held.

    The Lease is created, or taken over when free or expired with its resourceVersion as
    precondition, so two deploys never both hold it.

    Raises:
        DeployError: another deploy still holds it after ``wait_s``; nothing was applied.
    """
    name = lease_name(spec)
    deadline = clock() + wait_s
    while True:
        lease = api.get("Lease", spec.namespace, name)
        moment = now()
        body: Json = {
            "apiVersion": API_VERSIONS["Lease"],
            "kind": "Lease",
            "metadata": {"name": name, "namespace": spec.namespace, "labels": {"app": spec.name}},
            "spec": {
                "holderIdentity": holder,
                "leaseDurationSeconds": int(duration_s),
                "acquireTime": _micro_time(moment),
                "renewTime": _micro_time(moment),
            },
        }
        held = (lease or {}).get("spec") or {}
        holder_now = str(held.get("holderIdentity") or "")
        renewed = _parse_time(held.get("renewTime"))
        expired = renewed is None or (moment - renewed).total_seconds() > float(
            held.get("leaseDurationSeconds") or 0
        )
        try:
            if lease is None:
                api.create(body)
                return
            if not holder_now or expired:
                body["metadata"]["resourceVersion"] = lease["metadata"]["resourceVersion"]
                api.apply(body)
                return
        except ClusterConflict:
            pass  # another deploy wrote it between our read and our write: read again
        if clock() >= deadline:
            raise DeployError(
                f"Another deploy of {spec.namespace}/{spec.name} is in progress (Lease {name} "
                f"held by {holder_now or 'another deploy'} since {held.get('acquireTime', '?')}, "
                f"for {held.get('leaseDurationSeconds', '?')} s); nothing was applied. Deploy "
                "again when it has finished; if that deploy died, its lease expires by itself "
                f"(or `kubectl -n {spec.namespace} delete lease {name}`)."
            )
        sleep(poll_s)


def release_lease(api: ClusterApi, spec: DeploySpec, holder: str) -> None:
    """Delete the deploy Lease if ``holder`` still holds it; never raises."""
    try:
        lease = api.get("Lease", spec.namespace, lease_name(spec))
        if lease is not None and (lease.get("spec") or {}).get("holderIdentity") == holder:
            api.delete("Lease", spec.namespace, lease_name(spec))
    except Exception as exc:  # noqa: BLE001 - the lease expires by itself
        logger.warning("Could not release Lease %s/%s: %s", spec.namespace, lease_name(spec), exc)


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
        if current_hash == digest and _rollout_done(spec, current)[0]:
            logger.info(
                "%s %s/%s already serves %s (spec %s): nothing to apply",
                kind,
                spec.namespace,
                spec.name,
                spec.bento_tag,
                digest,
            )
            return DeployResult(
                _endpoint(spec, current), _revision(current), spec.bento_tag, False, digest, kind
            )

    logger.info(
        "Applying %s %s/%s for bento %s (spec %s, previous revision %s)",
        kind,
        spec.namespace,
        spec.name,
        spec.bento_tag,
        digest,
        _revision(current) or "none",
    )
    try:
        for obj in desired:
            api.apply(obj)
        primary = wait_for_rollout(api, spec, timeout_s, poll_s, clock, sleep, digest=digest)
        url = _endpoint(spec, primary)
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

    result = DeployResult(url, _revision(primary), spec.bento_tag, True, digest, kind)
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
