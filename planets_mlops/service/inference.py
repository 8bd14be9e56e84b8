"""Bytes in, answer out: what the service computes for each request, without BentoML.

The tensor comes from :func:`planets_mlops.preprocess.preprocess_image`, the very
function ``prepare_dataset`` used to build the training shards, so a served image and a
training image go through the same code (``tests/component/test_parity.py`` checks it bit for bit).
The answers themselves (the one softmax, the guard's verdict) come from
:mod:`planets_mlops.model_folder`, which every reader of a model folder shares.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from planets_mlops.errors import DataError
from planets_mlops.imaging import LIMITS, ImageHeader, ImageLimits, read_header
from planets_mlops.preprocess import PreprocessConfig, preprocess_image


class Cancelled(Exception):
    """The request's deadline passed; its remaining images were not decoded."""


def read_headers(blobs: Sequence[bytes], limits: ImageLimits = LIMITS) -> list[ImageHeader]:
    """The header of every blob (format, mode, size), checked against the image limits.

    Nothing is decoded: this is what the per-request pixel budget and the light/heavy
    split are computed from (a JPEG's scans are counted from its markers).

    Raises:
        planets_mlops.errors.DataError: a blob is empty, of a refused format or too large;
            the message names its position in a batch.
    """
    headers = []
    for position, blob in enumerate(blobs):
        try:
            headers.append(read_header(blob, limits))
        except DataError as exc:
            if len(blobs) == 1:
                raise
            raise DataError(f"Image {position} of {len(blobs)}: {exc}") from exc
    return headers


def images_to_batch(
    blobs: Sequence[bytes],
    config: PreprocessConfig,
    cancelled: Callable[[], bool] | None = None,
    limits: ImageLimits = LIMITS,
) -> np.ndarray:
    """Preprocess raw image files into one model batch ``(n, size, size, channels)``.

    Args:
        blobs: The image files.
        config: The model's preprocessing.
        cancelled: Asked before each image; when it answers True, stop with
            :class:`Cancelled` (the caller's deadline passed).
        limits: The image limits (the project's one set unless a test narrows them).

    Raises:
        planets_mlops.errors.DataError: one of the blobs is not a decodable image; the
            message names its position.
        Cancelled: ``cancelled()`` answered True.
    """
    tensors = []
    for position, blob in enumerate(blobs):
        if cancelled is not None and cancelled():
            raise Cancelled
        try:
            tensors.append(preprocess_image(blob, config, limits))
        except DataError as exc:
            if len(blobs) == 1:
                raise
            raise DataError(f"Image {position} of {len(blobs)}: {exc}") from exc
    return np.stack(tensors).astype(np.float32, copy=False)
