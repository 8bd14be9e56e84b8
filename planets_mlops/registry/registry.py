"""Model versions with lineage, the promotion lock, alias moves and their records.

Promotion is an alias: ``production`` names the version that serves, ``candidate`` the
latest challenger. Nothing copies a URI. MLflow has no compare-and-set on aliases, so a
move happens inside a lock:

1. **Lock.** A registered model named ``<model>.promotion-lock`` created with
   ``create_registered_model``: creation is atomic in the backend database, so of two
   promoters exactly one creates it; the other gets ``RESOURCE_ALREADY_EXISTS`` and waits
   (``lock_wait_s``), then gives up with :class:`PromotionConflictError`. The lock's tags
   name its holder and its expiry; a lock past its expiry (its holder died) is taken over
   through a second atomic creation, ``<lock>.takeover.<holder digest>``, so two waiters
   never both take over the same dead lock.
   **Fencing.** Each holding has a token: the lock model's creation time on the server
   (a takeover creates a new lock, so a new token), written with the holder to the
   registered model's tag ``planets.lock.fence`` as soon as the lock is held. A holder
   that stalled past the lock's lifetime (or whose clock made a waiter think so) finds
   another token there and is refused before it moves the alias, and checks again after
   recording, so two promotions never both report success.
2. **Compare-and-set.** Inside the lock the alias must still name the version the
   promoter expected (the one its gate compared against). If it moved, the promotion is
   refused with a message saying what it now names.
3. **Move and record.** The alias moves and a move record (who or which run, when, why,
   the gate's numbers, from and to, the fencing token) becomes the registered model's tag
   ``planets.move.<sequence>``, the sequence one above the highest record number present
   (readable or not, so an unreadable record is never overwritten); if writing the record
   fails, the alias is put back.
4. **Release** the lock (only if this holder still holds it).

MLflow has no conditional write, so the fence narrows the race to the few milliseconds
between the fence check and the alias write; it does not close it (docs/threat-model.md).
"""

from __future__ import annotations

import getpass
import hashlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from planets_mlops import safejson
from planets_mlops.errors import DataError, NotFoundError, PromotionConflictError, TrackingError
from planets_mlops.knobs import RegistryParams
from planets_mlops.storage_paths import MODEL_FILES, REQUIRED_MODEL_FILES, safe_destination

log = logging.getLogger(__name__)

PRODUCTION = "production"
CANDIDATE = "candidate"
LOCK_SUFFIX = ".promotion-lock"
TAKEOVER_INFIX = ".takeover."
MOVE_TAG = "planets.move."
TAG_HOLDER = "planets.lock.holder"
TAG_EXPIRES = "planets.lock.expires"
TAG_FENCE = "planets.lock.fence"
MAX_MODEL_FILE_BYTES = 512 * 1024 * 1024
"""Largest model file downloaded from the registry (the bundled model's ONNX is ~1 MB)."""


def now_iso() -> str:
    """The current UTC time, ISO 8601 with seconds."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def actor() -> str:
    """Who acts: the KFP run when there is one, else ``user@host``."""
    return f"{getpass.getuser()}@{socket.gethostname()}"


def _error_code(exc: BaseException) -> str:
    return str(getattr(exc, "error_code", ""))


_NOT_FOUND_CODES = ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND")


def _not_found_or_tracking(exc: BaseException, not_found: str, action: str) -> Exception:
    """The error to raise for an MLflow failure: not found only when the server said so.

    A timeout, a refused connection, a 5xx or exhausted retries is a :class:`TrackingError`
    that says what was being done; only an answer "does not exist" (or an invalid version
    number, for version look-ups) is a :class:`NotFoundError` with ``not_found``.
    """
    code = _error_code(exc)
    if code in _NOT_FOUND_CODES or (code == "INVALID_PARAMETER_VALUE" and "version" in action):
        return NotFoundError(not_found)
    detail = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
    return TrackingError(
        f"The tracking server failed while {action}: {detail}. Check that it is up and answering "
        "(MLFLOW_TRACKING_URI), then retry."
    )


def is_lock_name(name: str) -> bool:
    """True for the registry's own lock models (hidden from listings)."""
    return name.endswith(LOCK_SUFFIX) or TAKEOVER_INFIX in name


# ----------------------------------------------------------------------------- versions


def ensure_model(client: Any, name: str, description: str = "") -> None:
    """Create registered model ``name`` unless it exists (a concurrent creation is fine)."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name, description=description or None)
    except MlflowException as exc:
        if _error_code(exc) != "RESOURCE_ALREADY_EXISTS":
            raise


def alias_version(client: Any, name: str, alias: str) -> str | None:
    """The version ``alias`` names (a string, as MLflow gives it), or None when unset."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if _error_code(exc) in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise


def register_version(
    client: Any, name: str, run_id: str, tags: Mapping[str, Any], description: str = ""
) -> str:
    """Register the ``model/`` folder of run ``run_id`` as a version of ``name``; returns it.

    A retried task reuses the version already made from the same run. The version gets
    ``tags`` (lineage) and the ``candidate`` alias; if either fails, the version is
    deleted again, so nothing half-registered remains.
    """
    ensure_model(client, name, "Planets classifier. Aliases: production (serving), candidate (challenger).")
    existing = [v for v in client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")]
    if existing:
        version = str(existing[0].version)
        log.info("Run %s is already version %s of %s: reused", run_id, version, name)
        return version
    source = f"{client.get_run(run_id).info.artifact_uri.rstrip('/')}/model"
    created = client.create_model_version(name, source, run_id=run_id, description=description or None)
    version = str(created.version)
    try:
        for key, value in tags.items():
            client.set_model_version_tag(name, version, key, str(value))
        client.set_registered_model_alias(name, CANDIDATE, version)
    except BaseException:
        client.delete_model_version(name, version)
        raise
    log.info("Registered %s version %s from run %s", name, version, run_id)
    return version


def version_info(client: Any, name: str, version: str) -> dict[str, Any]:
    """One version as a plain dict: version, run, source, status, aliases, tags, created."""
    from mlflow.exceptions import MlflowException

    try:
        found = client.get_model_version(name, str(version))
    except MlflowException as exc:
        raise _not_found_or_tracking(
            exc,
            f"No version {version!r} of registered model {name!r}. `planets-mlops models list` shows them.",
            f"reading version {version!r} of {name!r}",
        ) from exc
    return {
        "name": name,
        "version": str(found.version),
        "run_id": found.run_id,
        "source": found.source,
        "status": found.status,
        "aliases": sorted(getattr(found, "aliases", []) or []),
        "created": datetime.fromtimestamp(found.creation_timestamp / 1000, UTC).isoformat(timespec="seconds"),
        "tags": dict(found.tags or {}),
    }


def list_versions(client: Any, name: str) -> list[dict[str, Any]]:
    """Every version of ``name``, newest first.

    Raises:
        NotFoundError: no registered model of that name.
    """
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException as exc:
        raise _not_found_or_tracking(
            exc,
            f"No registered model {name!r} on this tracking server. Run the training pipeline with "
            "tracking=True first, or pass --model NAME.",
            f"reading registered model {name!r}",
        ) from exc
    versions = client.search_model_versions(f"name = '{name}'")
    infos = [version_info(client, name, str(v.version)) for v in versions]
    return sorted(infos, key=lambda v: int(v["version"]), reverse=True)


def download_model(client: Any, name: str, version: str, target: Path) -> Path:
    """The model files of a version (only :data:`MODEL_FILES`, each bounded) into ``target``.

    Raises:
        DataError: a required file is missing, too large, or its name leaves ``target``.
    """
    run_id = client.get_model_version(name, version).run_id
    where = f"models:/{name}/{version}"
    listed = {Path(f.path).name: f for f in client.list_artifacts(run_id, "model")}
    target.mkdir(parents=True, exist_ok=True)
    for file_name in MODEL_FILES:
        entry = listed.get(file_name)
        if entry is None:
            if file_name in REQUIRED_MODEL_FILES:
                raise DataError(
                    f"{where} lacks {file_name} (it holds {sorted(listed)}). "
                    "Register a train_model output folder."
                )
            continue
        if entry.file_size is not None and entry.file_size > MAX_MODEL_FILE_BYTES:
            raise DataError(
                f"{where}: {file_name} is {entry.file_size} bytes, over the {MAX_MODEL_FILE_BYTES} limit; "
                "it is not a model of this project."
            )
        destination = safe_destination(target, file_name, f"{where}/{file_name}")
        downloaded = Path(client.download_artifacts(run_id, f"model/{file_name}", str(target)))
        if downloaded.resolve() != destination:
            downloaded.replace(destination)
    # download_artifacts keeps the artifact's folder: flatten model/<file> into target.
    nested = target / "model"
    if nested.is_dir():
        for item in nested.iterdir():
            item.replace(target / item.name)
        nested.rmdir()
    return target


# ----------------------------------------------------------------------------- the lock


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
        if _error_code(exc) == "RESOURCE_ALREADY_EXISTS":
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


# ----------------------------------------------------------------------------- moves


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


def require_model(client: Any, model: str) -> None:
    """Fail unless registered model ``model`` exists.

    Raises:
        NotFoundError: it does not.
    """
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(model)
    except MlflowException as exc:
        raise _not_found_or_tracking(
            exc,
            f"No registered model {model!r}. Run a pipeline with tracking=True first.",
            f"reading registered model {model!r}",
        ) from exc


# ----------------------------------------------------------------------------- evaluate's opponent


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
