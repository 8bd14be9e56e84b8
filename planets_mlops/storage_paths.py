"""Resolve a model URI given as a parameter (not as an input artifact) to a local folder.

The objects under a ``gs://`` prefix are outside input: anyone who can write to the bucket
chooses their names. Only the files the caller names (:class:`ModelFiles`: evaluation its
model and guard, the drift step its monitoring reference) are downloaded, each to a path
checked to stay inside the target folder; a name that would leave it is refused.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from planets_mlops.errors import DataError
from planets_mlops.model_folder import (
    BANK_FILE,
    CLASSES_FILE,
    GUARD_FILE,
    IMAGES_FILE,
    ONNX_FILE,
    PREPROCESS_FILE,
    REFERENCE_FILE,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelFiles:
    """The files of a model folder (a ``train_model`` output) that one caller reads.

    Attributes:
        required: Missing one is an error naming the folder and what it holds.
        optional: Downloaded when present.
    """

    required: tuple[str, ...]
    optional: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        """Every file this caller may download, required first."""
        return self.required + self.optional


EVALUATE_FILES = ModelFiles((ONNX_FILE, CLASSES_FILE), (PREPROCESS_FILE, GUARD_FILE, BANK_FILE, IMAGES_FILE))
"""What evaluation reads from the production model: the model, its classes and its guard."""
DRIFT_FILES = ModelFiles((REFERENCE_FILE,), (CLASSES_FILE,))
"""What the drift step reads from the model in production: its monitoring reference."""
REQUIRED_MODEL_FILES = EVALUATE_FILES.required
MODEL_FILES = EVALUATE_FILES.names


def safe_destination(target: Path, relative: str, source: str) -> Path:
    """``target / relative``, refusing any name that resolves outside ``target``.

    Args:
        target: the folder everything must land in.
        relative: the name relative to ``target`` (``/``-separated, as in object names).
        source: where the name came from, for the error message.

    Raises:
        DataError: ``relative`` is empty, absolute, has ``.``/``..``/empty parts or a
            backslash, or resolves (through links too) outside ``target``.
    """
    root = target.resolve()
    unsafe = (
        not relative
        or "\\" in relative
        or "\x00" in relative
        or relative.startswith("/")
        or any(part in ("", ".", "..") for part in relative.split("/"))
    )
    destination = root if unsafe else root.joinpath(*PurePosixPath(relative).parts).resolve()
    if destination == root or not destination.is_relative_to(root):
        raise DataError(
            f"Refusing {source!r}: its name {relative!r} resolves outside "
            f"{str(target)!r}. Remove or rename the object; a model folder holds plain "
            "file names such as model.onnx and classes.json."
        )
    return destination


def _check_model_dir(path: Path, uri: str, files: ModelFiles, param: str) -> Path:
    missing = [name for name in files.required if not (path / name).is_file()]
    if missing:
        present = sorted(p.name for p in path.iterdir()) if path.is_dir() else []
        raise DataError(
            f"{param}={uri!r} lacks {', '.join(missing)} (it holds "
            f"{present or 'nothing'}). Pass the model folder of a train_model output of this "
            "project's version (train_model writes every file a caller reads)."
        )
    for name in files.names:
        if (path / name).exists():
            safe_destination(path, name, f"{uri.rstrip('/')}/{name}")
    return path


def resolve_model_dir(
    uri: str, files: ModelFiles = EVALUATE_FILES, param: str = "production_model_uri"
) -> Path:
    """A local model folder for ``uri``: a local path as-is, ``gs://`` downloaded to a temp dir.

    From ``gs://`` only the files ``files`` names, directly under the prefix, are
    downloaded; other objects are skipped and counted in the log.

    Args:
        uri: A ``train_model`` output folder: a local path or ``gs://BUCKET/PREFIX``.
        files: What the caller reads (:data:`EVALUATE_FILES`, :data:`DRIFT_FILES`).
        param: The parameter ``uri`` came from, named in errors.

    Returns:
        The local folder (a new temporary folder for ``gs://``; the caller may delete it).

    Raises:
        DataError: the folder or the objects under the prefix do not exist, a required
            model file is missing, or an object or link name points outside the folder.
    """
    if uri.startswith("gs://"):
        from planets_mlops.storage import make_client, parse_gs_uri

        bucket_name, prefix = parse_gs_uri(uri.rstrip("/") + "/" + files.required[0])
        prefix = prefix.rsplit("/", 1)[0] + "/"
        blobs = list(make_client().list_blobs(bucket_name, prefix=prefix))
        if not blobs:
            raise DataError(
                f"No objects under {param}={uri!r}. Pass the model folder URI of "
                f"a train_model output (it holds {' and '.join(files.required)})."
            )
        target = Path(tempfile.mkdtemp(prefix="model-"))
        try:
            return _download_model_files(blobs, bucket_name, prefix, target, uri, files, param)
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
    path = Path(uri)
    if not path.is_dir():
        raise DataError(
            f"{param}={uri!r} is not a folder. Pass the model folder of the model "
            "in production (a train_model output: local path or gs://bucket/...)."
        )
    return _check_model_dir(path, uri, files, param)


def _download_model_files(
    blobs: list[Any], bucket_name: str, prefix: str, target: Path, uri: str, files: ModelFiles, param: str
) -> Path:
    skipped: list[str] = []
    for blob in blobs:
        relative = blob.name[len(prefix) :]
        source = f"gs://{bucket_name}/{blob.name}"
        if relative.endswith("/") or not relative:  # a folder placeholder, no content
            if relative.rstrip("/"):
                safe_destination(target, relative.rstrip("/"), source)
            skipped.append(relative)
            continue
        destination = safe_destination(target, relative, source)
        if relative not in files.names:
            skipped.append(relative)
            continue
        blob.download_to_filename(str(destination), checksum="md5")
    if skipped:
        log.info(
            "model %s: downloaded %s, skipped %d other objects: %s",
            uri,
            sorted(p.name for p in target.iterdir()),
            len(skipped),
            skipped[:20],
        )
    return _check_model_dir(target, uri, files, param)
