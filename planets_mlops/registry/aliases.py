"""Alias moves by compare-and-set inside the lock, and the record of every move.

Also what evaluation compares against: the version the ``production`` alias names
(:func:`production_opponent`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from planets_mlops import safejson
from planets_mlops.errors import NotFoundError, PromotionConflictError
from planets_mlops.registry.lock import (
    LOCK_SUFFIX,
    LockSettings,
    _fence_of,
    check_fence,
    promotion_lock,
)
from planets_mlops.registry.versions import (
    CANDIDATE,
    PRODUCTION,
    _error_code,
    _not_found_or_tracking,
    actor,
    alias_version,
    download_model,
    now_iso,
)

log = logging.getLogger(__name__)


MOVE_TAG = "planets.move."


def moves(client: Any, model: str) -> list[dict[str, Any]]:
    """Every readable recorded alias move of ``model``, oldest first (others logged and skipped)."""
    tags = dict(client.get_registered_model(model).tags or {})
    records = []
    for key in sorted(k for k in tags if k.startswith(MOVE_TAG)):
        try:
            record = safejson.loads(tags[key])
        except safejson.JsonError as exc:
            log.warning("Skipping unreadable move record %s of %s: %s", key, model, exc.reason)
            continue
        if isinstance(record, dict):
            records.append(record)
        else:
            log.warning("Skipping move record %s of %s: not an object", key, model)
    return records


def next_sequence(client: Any, model: str) -> int:
    """One above the highest move record number present, readable or not (1 for the first)."""
    tags = dict(client.get_registered_model(model).tags or {})
    numbers = [
        int(key[len(MOVE_TAG) :])
        for key in tags
        if key.startswith(MOVE_TAG) and key[len(MOVE_TAG) :].isdigit()
    ]
    return max(numbers, default=0) + 1


@dataclass(frozen=True)
class Move:
    """One alias move, as recorded.

    Attributes:
        sequence: Its number among the moves of the model (1, 2, ...).
        alias: The alias moved.
        from_version: The version it named before (None: it was unset).
        to_version: The version it names now.
        record: The whole record (who, run, when, why, gate).
    """

    sequence: int
    alias: str
    from_version: str | None
    to_version: str
    record: dict[str, Any]


def move_alias(
    client: Any,
    model: str,
    alias: str,
    version: str,
    *,
    expected: str | None,
    why: str,
    by: str = "",
    kfp_run_id: str = "",
    gate: Mapping[str, Any] | None = None,
    lock: LockSettings = LockSettings(),
    before_move: Callable[[], None] | None = None,
) -> Move:
    """Point ``alias`` of ``model`` at ``version`` if it still names ``expected``.

    Args:
        client: An ``MlflowClient``.
        model: Registered model name.
        alias: ``production`` (or ``candidate``).
        version: The version it should name.
        expected: The version the caller saw it name (None: unset); anything else
            refuses the move.
        why: The reason, recorded (e.g. the gate's verdict line, or a rollback's reason).
        by: Who moves it (default: ``user@host``).
        kfp_run_id: The KFP run moving it, if any.
        gate: The gate's numbers, recorded with the move.
        lock: Lock lifetime and wait.
        before_move: Called inside the lock after the check (tests use it to hold the lock).

    Returns:
        The recorded move.

    Raises:
        PromotionConflictError: the alias no longer names ``expected``, or the lock stayed
            held by another promotion.
        NotFoundError: ``version`` is not a version of ``model``.
    """
    from mlflow.exceptions import MlflowException

    version = str(version)
    try:
        client.get_model_version(model, version)
    except MlflowException as exc:
        raise _not_found_or_tracking(
            exc,
            f"No version {version!r} of registered model {model!r} to point {alias!r} at.",
            f"reading version {version!r} of {model!r}",
        ) from exc
    with promotion_lock(client, model, lock) as holder:
        current = alias_version(client, model, alias)
        if current == version and kfp_run_id:
            # A retried promotion of the same run: the move is done; do not record it twice.
            for done in reversed(moves(client, model)):
                if done.get("alias") == alias and done.get("to_version") == version:
                    if done.get("kfp_run_id") == kfp_run_id:
                        return Move(int(done["sequence"]), alias, done.get("from_version"), version, done)
                    break
        if current != (str(expected) if expected is not None else None):
            raise PromotionConflictError(
                f"Refused: {alias!r} of {model!r} names version {current or 'none'}, not "
                f"{expected or 'none'} as this promotion expected; another promotion moved it first. "
                f"Version {version} stays {CANDIDATE if alias == PRODUCTION else 'as it is'}: evaluate it "
                f"against the new {alias} (rerun the pipeline) or move it with "
                "`planets-mlops models promote`."
            )
        if before_move is not None:
            before_move()
        fence = _fence_of(client, model + LOCK_SUFFIX, holder)
        check_fence(client, model, fence)
        sequence = next_sequence(client, model)
        record = {
            "sequence": sequence,
            "model": model,
            "alias": alias,
            "from_version": current,
            "to_version": version,
            "by": by or actor(),
            "kfp_run_id": kfp_run_id,
            "when": now_iso(),
            "why": why,
            "gate": dict(gate or {}),
            "lock_holder": holder,
            "fence": fence,
        }
        client.set_registered_model_alias(model, alias, version)
        try:
            client.set_registered_model_tag(
                model, f"{MOVE_TAG}{sequence:06d}", json.dumps(record, sort_keys=True)
            )
            client.set_model_version_tag(model, version, f"planets.{alias}_since", record["when"])
        except BaseException:
            if current is None:
                client.delete_registered_model_alias(model, alias)
            else:
                client.set_registered_model_alias(model, alias, current)
            raise
        check_fence(client, model, fence, moved=True)
    log.info("%s of %s: version %s -> %s (%s)", alias, model, current, version, why)
    return Move(sequence, alias, current, version, record)


def previous_version(client: Any, model: str, alias: str = PRODUCTION) -> str:
    """The version ``alias`` named before its current one, from the move records.

    Raises:
        NotFoundError: the alias is unset or was never moved from another version.
    """
    current = alias_version(client, model, alias)
    if current is None:
        raise NotFoundError(f"{alias!r} of {model!r} names no version: nothing to roll back.")
    for record in reversed(moves(client, model)):
        if (
            record.get("alias") == alias
            and record.get("to_version") == current
            and record.get("from_version")
        ):
            return str(record["from_version"])
    raise NotFoundError(
        f"{alias!r} of {model!r} (version {current}) was never moved from another version: no previous "
        "version to roll back to. Pass --to VERSION."
    )


@dataclass(frozen=True)
class Opponent:
    """The model a candidate is compared with.

    Attributes:
        model_dir: Its local model folder; None when there is none (first model).
        version: The registry version ``production`` named when it was read ("" when the
            opponent came from an explicit URI and the registry was not consulted, or none).
        source: Where it came from, for the verdict (a URI or ``models:/name@production``).
    """

    model_dir: Path | None
    version: str
    source: str


def production_opponent(client: Any | None, model: str, explicit_uri: str, target: Path) -> Opponent:
    """What evaluate compares against: an explicit URI wins, else ``models:/<model>@production``.

    With a client, the version ``production`` names is read even when the URI is explicit,
    so the promotion's compare-and-set expects the production this evaluation saw.

    Args:
        client: An ``MlflowClient``, or None with tracking off (then only the URI counts).
        model: Registered model name.
        explicit_uri: ``production_model_uri`` (local folder or ``gs://``); empty: use the alias.
        target: Folder for the downloaded model files.
    """
    from planets_mlops.storage_paths import resolve_model_dir

    version = ""
    if client is not None:
        try:
            client.get_registered_model(model)
            version = alias_version(client, model, PRODUCTION) or ""
        except Exception as exc:  # noqa: BLE001 - a missing model is "no production yet"
            if _error_code(exc) != "RESOURCE_DOES_NOT_EXIST":
                raise
    if explicit_uri:
        return Opponent(resolve_model_dir(explicit_uri), version, explicit_uri)
    if client is None:
        return Opponent(None, "", "")
    if not version:
        return Opponent(None, "", f"models:/{model}@{PRODUCTION} (not set yet)")
    return Opponent(download_model(client, model, version, target), version, f"models:/{model}/{version}")
