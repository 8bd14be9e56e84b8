"""Registered models and their versions, with lineage.

Create a registered model, register a version (its tags the lineage), read one or all of
them, download a version's model files, and the MLflow error mapping every registry call
shares (not-found only when the server says so).
"""

from __future__ import annotations

import getpass
import logging
import socket
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from planets_mlops.errors import DataError, NotFoundError, TrackingError
from planets_mlops.storage_paths import MODEL_FILES, REQUIRED_MODEL_FILES, safe_destination

log = logging.getLogger(__name__)


PRODUCTION = "production"


CANDIDATE = "candidate"


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
