"""Resolve a model URI given as a parameter (not as an input artifact) to a local folder."""

from __future__ import annotations

import tempfile
from pathlib import Path

from planets_mlops.errors import DataError


def resolve_model_dir(uri: str) -> Path:
    """A local model folder for ``uri``: a local path as-is, ``gs://`` downloaded to a temp dir.

    Args:
        uri: A ``train_model`` output folder: a local path or ``gs://BUCKET/PREFIX``.

    Returns:
        The local folder (a new temporary folder for ``gs://``; the caller may delete it).

    Raises:
        DataError: the folder or the objects under the prefix do not exist.
    """
    if uri.startswith("gs://"):
        from planets_mlops.storage import make_client, parse_gs_uri

        bucket_name, prefix = parse_gs_uri(uri.rstrip("/") + "/model.onnx")
        prefix = prefix.rsplit("/", 1)[0] + "/"
        target = Path(tempfile.mkdtemp(prefix="model-"))
        blobs = list(make_client().list_blobs(bucket_name, prefix=prefix))
        if not blobs:
            raise DataError(
                f"No objects under production_model_uri={uri!r}. Pass the model folder URI of "
                "a train_model output (it holds model.onnx and classes.json)."
            )
        for blob in blobs:
            destination = target / blob.name[len(prefix) :]
            destination.parent.mkdir(parents=True, exist_ok=True)
            blob.download_to_filename(str(destination))
        return target
    path = Path(uri)
    if not path.is_dir():
        raise DataError(
            f"production_model_uri={uri!r} is not a folder. Pass the model folder of the model "
            "in production (a train_model output: local path or gs://bucket/...)."
        )
    return path
