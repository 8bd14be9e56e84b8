"""Wait for a rollout, tell a broken pod from a slow one, roll back.

While it waits, a deploy checks that the objects are still ours (their spec hash), so it
never reports success on someone else's rollout; a rollback tries every object even when
one of them fails.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from planets_mlops.deploy import manifests
from planets_mlops.deploy.cluster import ClusterApi, Json
from planets_mlops.deploy.manifests import DeploySpec
from planets_mlops.errors import DeployError

logger = logging.getLogger(__name__)


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


class SupersededError(DeployError):
    """Another writer replaced the object during this deploy: it is theirs now, not rolled back."""


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


def revision_of(obj: Json | None) -> str:
    """The Deployment's revision or the InferenceService's generation ("" when unknown)."""
    if obj is None:
        return ""
    meta = obj.get("metadata", {})
    if obj.get("kind") == "Deployment":
        return str((meta.get("annotations") or {}).get(REVISION_ANNOTATION, ""))
    if obj.get("kind") == "InferenceService":
        return str(meta.get("generation", ""))
    return ""


def endpoint_of(spec: DeploySpec, primary: Json | None) -> str:
    """The in-cluster base URL of the deployed model."""
    if spec.kserve:
        status = (primary or {}).get("status") or {}
        url = (status.get("address") or {}).get("url") or status.get("url")
        return str(url or f"http://{spec.name}-predictor.{spec.namespace}.svc.cluster.local")
    return manifests.service_url(spec)


def rollout_done(spec: DeploySpec, primary: Json | None) -> tuple[bool, str]:
    """Whether the primary object's rollout is complete, and its state in words."""
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
        done, state = rollout_done(spec, primary)
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
                rev = revision_of(before)
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
