"""Helpers shared by the test modules: KFP artifacts on disk, compiled IR, file digests.

Free ports come from ``planets_mlops.app.dev.net.free_port`` (the one the local servers use).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, TypeVar

from planets_mlops.app.params import load_ir_documents

A = TypeVar("A")


def make_artifact(kind: type[A], path: Path, metadata: dict[str, Any] | None = None) -> A:
    """A real ``kfp.dsl`` artifact (``Dataset``, ``Model``, ...) whose ``.path`` is ``path``.

    The artifact is named after the file or folder; ``metadata`` is copied.
    """
    return kind(name=Path(path).name, uri=str(path), metadata=dict(metadata or {}))  # type: ignore[call-arg]


def load_ir(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """A compiled pipeline YAML as ``(pipeline spec, kubernetes platform spec or {})``."""
    docs = load_ir_documents(Path(path).read_text())
    platform = docs[1]["platforms"]["kubernetes"] if len(docs) > 1 else {}
    return docs[0], platform


def compile_ir(pipeline: Any, path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Compile a pipeline (or component) to ``path`` with the KFP compiler and load it."""
    from kfp import compiler

    compiler.Compiler().compile(pipeline, str(path))
    return load_ir(path)


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tree_digest(root: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under ``root``: equal digests, equal trees."""
    root = Path(root)
    return {str(p.relative_to(root)): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


def upload_to_gcs(local: Path, gs_uri: str) -> str:
    """Put a local file at ``gs_uri`` (MD5 checked by the server) with the project's client.

    With ``STORAGE_EMULATOR_HOST`` set (the ``gcs_emulator`` fixture) it goes to the emulator.
    """
    from planets_mlops.storage import make_client, parse_gs_uri

    bucket, name = parse_gs_uri(gs_uri)
    make_client().bucket(bucket).blob(name).upload_from_filename(str(local), checksum="md5")
    return gs_uri


def add_local_storage(client: Any, project_id: int, path: Path) -> int:
    """Connect a Label Studio local-files storage at ``path`` to a project; returns its id.

    Tasks of the project can then name images as ``/data/local-files/?d=<relative path>``;
    ``path`` must lie under the server's document root.
    """
    from planets_mlops.labelstudio.client import NO_RETRY

    with client.errors(f"adding local storage {path} to project {project_id}", project=project_id):
        storage = client.sdk.import_storage.local.create(
            project=project_id,
            path=str(path),
            title="local images",
            use_blob_urls=True,
            request_options=NO_RETRY,
        )
    return int(storage.id)
