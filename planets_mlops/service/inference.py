"""Bytes in, answer out: what the service computes for each request, without BentoML.

The tensor comes from :func:`planets_mlops.preprocess.preprocess_image`, the very
function ``prepare_dataset`` used to build the training shards, so a served image and a
training image go through the same code (``tests/component/test_parity.py`` checks it bit for bit).
The answers themselves (the one softmax, the guard's verdict) come from
:mod:`planets_mlops.model_folder`, which every reader of a model folder shares.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from PIL import ImageFile

from planets_mlops.errors import DataError
from planets_mlops.imaging import LIMITS, ImageHeader, ImageLimits, decode_open, open_image
from planets_mlops.preprocess import PreprocessConfig, model_input, preprocess_image

# What an uploaded file is called in error messages (planets_mlops.imaging names bytes so).
_UPLOAD = "upload"


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
    opened = open_images(blobs, limits)
    close_images(opened)
    return [header for header, _ in opened]


def open_images(
    blobs: Sequence[bytes], limits: ImageLimits = LIMITS
) -> list[tuple[ImageHeader, ImageFile.ImageFile]]:
    """:func:`read_headers`, each file left open for :func:`opened_to_batch` (close them after).

    Raises:
        planets_mlops.errors.DataError: as :func:`read_headers` (the files opened so far are
            closed).
    """
    opened: list[tuple[ImageHeader, ImageFile.ImageFile]] = []
    for position, blob in enumerate(blobs):
        try:
            opened.append(open_image(blob, limits))
        except DataError as exc:
            close_images(opened)
            if len(blobs) == 1:
                raise
            raise DataError(f"Image {position} of {len(blobs)}: {exc}") from exc
    return opened


def close_images(opened: Sequence[tuple[ImageHeader, ImageFile.ImageFile]]) -> None:
    """Close the files of :func:`open_images`."""
    for _, image in opened:
        image.close()


def opened_to_batch(
    opened: Sequence[tuple[ImageHeader, ImageFile.ImageFile]], config: PreprocessConfig
) -> np.ndarray:
    """:func:`images_to_batch` of files already opened by :func:`open_images` (not closed here).

    The same tensors, to the bit: the same decoder (:func:`planets_mlops.imaging.decode_open`)
    and the same resize (:func:`planets_mlops.preprocess.model_input`) as
    :func:`planets_mlops.preprocess.preprocess_image`.

    Raises:
        planets_mlops.errors.DataError: one of the files does not decode; the message names
            its position.
    """
    return _batch(opened, lambda item: model_input(decode_open(item[1], _UPLOAD, config.grayscale), config))


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
    return _batch(blobs, lambda blob: preprocess_image(blob, config, limits), cancelled)


def _batch(
    items: Sequence[Any], tensor_of: Callable[[Any], np.ndarray], cancelled: Callable[[], bool] | None = None
) -> np.ndarray:
    """``tensor_of`` each item, stacked ``float32``; an error names the item's position in a batch.

    Raises:
        planets_mlops.errors.DataError: ``tensor_of`` refused an item.
        Cancelled: ``cancelled()`` answered True before an item.
    """
    tensors = []
    for position, item in enumerate(items):
        if cancelled is not None and cancelled():
            raise Cancelled
        try:
            tensors.append(tensor_of(item))
        except DataError as exc:
            if len(items) == 1:
                raise
            raise DataError(f"Image {position} of {len(items)}: {exc}") from exc
    return np.stack(tensors).astype(np.float32, copy=False)
