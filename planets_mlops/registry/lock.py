"""The promotion lock and its fencing token.

A registered model named ``<model>.promotion-lock``, created atomically, held by one
promoter at a time; a lock past its expiry is taken over through a second atomic creation.
Each holding has a fencing token (the lock's creation time on the server), checked before
and after a move (see :mod:`planets_mlops.registry.registry`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from planets_mlops.errors import PromotionConflictError
from planets_mlops.knobs import RegistryParams
from planets_mlops.registry.versions import (
    _NOT_FOUND_CODES,
    _error_code,
    actor,
)

log = logging.getLogger(__name__)


LOCK_SUFFIX = ".promotion-lock"


TAKEOVER_INFIX = ".takeover."


TAG_HOLDER = "planets.lock.holder"


TAG_EXPIRES = "planets.lock.expires"


TAG_FENCE = "planets.lock.fence"


def is_lock_name(name: str) -> bool:
    """True for the registry's own lock models (hidden from listings)."""
    return name.endswith(LOCK_SUFFIX) or TAKEOVER_INFIX in name


@dataclass(frozen=True)
class LockSettings:
    """How long a lock lives and how long a promoter waits for one."""

    ttl_s: float = RegistryParams.lock_ttl_s
    wait_s: float = RegistryParams.lock_wait_s
    poll_s: float = 0.25


def _lock_tags(client: Any, lock: str) -> dict[str, str] | None:
    from mlflow.exceptions import MlflowException

    try:
        return dict(client.get_registered_model(lock).tags or {})
    except MlflowException as exc:
        if _error_code(exc) == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise


def _create_lock(client: Any, lock: str, holder: str, ttl_s: float, clock: Callable[[], float]) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(
            lock,
            tags={TAG_HOLDER: holder, TAG_EXPIRES: f"{clock() + ttl_s:.3f}"},
            description="Promotion lock (planets-mlops). Held while an alias moves; expires by its tag.",
        )
        return True
    except MlflowException as exc:
        # Already held; or held when the insert collided and released before the server
        # read it back (it then answers RESOURCE_DOES_NOT_EXIST): taken either way, try again.
        if _error_code(exc) in ("RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST"):
            return False
        raise


def _delete_if_held_by(client: Any, lock: str, holder: str) -> bool:
    from mlflow.exceptions import MlflowException

    tags = _lock_tags(client, lock)
    if tags is None or tags.get(TAG_HOLDER) != holder:
        return False
    try:
        client.delete_registered_model(lock)
    except MlflowException as exc:
        if _error_code(exc) != "RESOURCE_DOES_NOT_EXIST":
            raise
    return True


def _take_over(
    client: Any, lock: str, dead: str, me: str, settings: LockSettings, clock: Callable[[], float]
) -> bool:
    """Replace the expired lock of holder ``dead``; only one taker per dead holder wins."""
    marker = f"{lock}{TAKEOVER_INFIX}{hashlib.sha256(dead.encode()).hexdigest()[:16]}"
    if not _create_lock(client, marker, me, settings.ttl_s, clock):
        tags = _lock_tags(client, marker) or {}
        if float(tags.get(TAG_EXPIRES, "inf")) < clock():  # the taker died too
            _delete_if_held_by(client, marker, tags.get(TAG_HOLDER, ""))
        return False
    try:
        log.warning("Taking over the expired promotion lock %s of %s", lock, dead)
        _delete_if_held_by(client, lock, dead)
        return _create_lock(client, lock, me, settings.ttl_s, clock)
    finally:
        _delete_if_held_by(client, marker, me)


def _fence_of(client: Any, lock: str, holder: str) -> str:
    """The fencing token of ``holder``'s holding of ``lock``: ``<creation ms>:<holder>``.

    Raises:
        PromotionConflictError: the lock is gone or held by another (this holding expired).
    """
    from mlflow.exceptions import MlflowException

    try:
        found = client.get_registered_model(lock)
    except MlflowException as exc:
        if _error_code(exc) not in _NOT_FOUND_CODES:
            raise
        found = None
    if found is None or (found.tags or {}).get(TAG_HOLDER) != holder:
        raise PromotionConflictError(
            f"The promotion lock {lock} is no longer held by {holder}: it expired and another "
            "promotion took it over. Nothing was moved by this one; rerun it."
        )
    return f"{int(found.creation_timestamp or 0)}:{holder}"


def check_fence(client: Any, model: str, fence: str, moved: bool = False) -> None:
    """Refuse unless ``model``'s fence tag still holds this holding's token ``fence``.

    Args:
        client: An ``MlflowClient``.
        model: Registered model name.
        fence: The token :func:`promotion_lock` wrote for this holding.
        moved: Checked after the move (the message then says the outcome is uncertain).

    Raises:
        PromotionConflictError: another holding wrote its token since (this one expired).
    """
    current = dict(client.get_registered_model(model).tags or {}).get(TAG_FENCE, "")
    if current == fence:
        return
    other = current.partition(":")[2] or "another promoter"
    if moved:
        raise PromotionConflictError(
            f"This promotion's lock on {model!r} expired while it moved the alias, and {other} took it "
            "over: the alias may have been moved by both. Check it with `planets-mlops models show` "
            "before anything else."
        )
    raise PromotionConflictError(
        f"This promotion's lock on {model!r} expired (it stalled past lock_ttl_s, or a clock is off) "
        f"and {other} took it over; nothing was moved by this one. Rerun it."
    )


@contextmanager
def promotion_lock(
    client: Any,
    model: str,
    settings: LockSettings = LockSettings(),
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[str]:
    """Hold the promotion lock of ``model`` for the ``with`` block; yields the holder id.

    Raises:
        PromotionConflictError: another holder kept the lock for ``settings.wait_s``.
    """
    lock = model + LOCK_SUFFIX
    me = f"{actor()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
    deadline = time.monotonic() + settings.wait_s
    while not _create_lock(client, lock, me, settings.ttl_s, clock):
        tags = _lock_tags(client, lock)
        if tags is not None:
            holder, expires = tags.get(TAG_HOLDER, ""), float(tags.get(TAG_EXPIRES, "0") or 0)
            if expires < clock() and _take_over(client, lock, holder, me, settings, clock):
                break
            if time.monotonic() > deadline:
                raise PromotionConflictError(
                    f"Another promotion of {model!r} holds its lock ({holder}, expires "
                    f"{datetime.fromtimestamp(expires, UTC).isoformat(timespec='seconds')}); "
                    f"waited {settings.wait_s:g} s. Retry when it is done; a lock whose holder died "
                    f"expires after lock_ttl_s ({settings.ttl_s:g} s)."
                )
        sleep(settings.poll_s)
    try:
        # Raise the fence at once: a holder this one took over from is refused from now on.
        with_fence = _fence_of(client, lock, me)
        from mlflow.exceptions import MlflowException

        try:
            client.set_registered_model_tag(model, TAG_FENCE, with_fence)
        except MlflowException as exc:
            if _error_code(exc) not in _NOT_FOUND_CODES:
                raise
        yield me
    finally:
        if not _delete_if_held_by(client, lock, me):
            log.warning("The promotion lock %s was no longer held by %s on release (it expired)", lock, me)
