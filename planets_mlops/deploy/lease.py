"""One deploy of a target at a time.

Deploys of one target are serialised by a ``coordination.k8s.io`` Lease (``<name>-deploy``)
taken with a create or a resourceVersion precondition; a deploy that finds it held waits,
then fails without applying anything.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from planets_mlops.deploy.cluster import API_VERSIONS, ClusterApi, ClusterConflict, Json
from planets_mlops.deploy.manifests import DeploySpec
from planets_mlops.errors import DeployError

logger = logging.getLogger(__name__)


LEASE_SUFFIX = "-deploy"


# The lease outlives the longest deploy: rollout timeout + smoke test + rollback.
LEASE_MARGIN_S = 120


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
