"""Resolve a model URI given as a parameter (not as an input artifact) to a local folder.

The objects under a ``gs://`` prefix are outside input: anyone who can write to the bucket
chooses their names. Only the files a model folder holds are downloaded, each to a path
checked to stay inside the target folder; a name that would leave it is refused.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from planets_mlops.errors import DataError

log = logging.getLogger(__name__)

# What evaluation reads from a production model folder (a train_model output).
REQUIRED_MODEL_FILES = ("model.onnx", "classes.json")
OPTIONAL_MODEL_FILES = ("preprocess.json",)
MODEL_FILES = REQUIRED_MODEL_FILES + OPTIONAL_MODEL_FILES


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
            f"{str(target)!r}. Remove or rename the object; a model folder holds only "
            f"{', '.join(MODEL_FILES)}."
        )
    return destination


def _check_model_dir(path: Path, uri: str) -> Path:
    missing = [name for name in REQUIRED_MODEL_FILES if not (path / name).is_file()]
    if missing:
        present = sorted(p.name for p in path.iterdir()) if path.is_dir() else []
        raise DataError(
            f"production_model_uri={uri!r} lacks {', '.join(missing)} (it holds "
            f"{present or 'nothing'}). Pass the model folder of a train_model output."
        )
    for name in MODEL_FILES:
        if (path / name).exists():
            safe_destination(path, name, f"{uri.rstrip('/')}/{name}")
    return path


def resolve_model_dir(uri: str) -> Path:
    """A local model folder for ``uri``: a local path as-is, ``gs://`` downloaded to a temp dir.

    From ``gs://`` only the model files (:data:`MODEL_FILES`) directly under the prefix are
    downloaded; other objects are skipped and counted in the log.

    Args:
        uri: A ``train_model`` output folder: a local path or ``gs://BUCKET/PREFIX``.

    Returns:
        The local folder (a new temporary folder for ``gs://``; the caller may delete it).

    Raises:
        DataError: the folder or the objects under the prefix do not exist, a required
            model file is missing, or an object or link name points outside the folder.
    """
    if uri.startswith("gs://"):
        from planets_mlops.storage import make_client, parse_gs_uri

        bucket_name, prefix = parse_gs_uri(uri.rstrip("/") + "/model.onnx")
        prefix = prefix.rsplit("/", 1)[0] + "/"
        blobs = list(make_client().list_blobs(bucket_name, prefix=prefix))
        if not blobs:
            raise DataError(
                f"No objects under production_model_uri={uri!r}. Pass the model folder URI of "
                "a train_model output (it holds model.onnx and classes.json)."
            )
        target = Path(tempfile.mkdtemp(prefix="model-"))
        try:
            return _download_model_files(blobs, bucket_name, prefix, target, uri)
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
    path = Path(uri)
    if not path.is_dir():
        raise DataError(
            f"production_model_uri={uri!r} is not a folder. Pass the model folder of the model "
            "in production (a train_model output: local path or gs://bucket/...)."
        )
    return _check_model_dir(path, uri)


def _download_model_files(blobs: list[Any], bucket_name: str, prefix: str, target: Path, uri: str) -> Path:
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
        if relative not in MODEL_FILES:
            skipped.append(relative)
            continue
        blob.download_to_filename(str(destination), checksum="md5")
    if skipped:
        log.info(
            "production model %s: downloaded %s, skipped %d other objects: %s",
            uri,
            sorted(p.name for p in target.iterdir()),
            len(skipped),
            skipped[:20],
        )
    return _check_model_dir(target, uri)
