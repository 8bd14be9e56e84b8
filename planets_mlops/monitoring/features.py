"""Scalar image features and a fixed low-dimensional projection of the guard's embedding.

Both are computed from the *model-input tensors* (``(n, size, size, channels)`` float32 in
[0, 1], what :func:`planets_mlops.preprocess.preprocess_image` makes), so a training image
and a served image go through the same code and drift is measured on what the model sees.
NumPy only: the service imports this module.

Features (:data:`FEATURES`, one float per image):

- ``brightness``: mean luminance (ITU-R BT.601 weights; a grayscale input is its own luminance).
- ``contrast``: standard deviation of luminance.
- ``red_mean``, ``green_mean``, ``blue_mean``: channel means (all equal for grayscale inputs).
- ``saturation``: mean over pixels of (max - min) across the colour channels (0 for grayscale).
- ``dark_fraction``: share of pixels with luminance below 0.1.
- ``sharpness``: variance of the 4-neighbour Laplacian of luminance.
- ``horizontal_energy``: mean absolute horizontal gradient over the sum of horizontal and
  vertical ones (0.5 for an isotropic image; a 90-degree rotation maps ``x`` to ``1 - x``).
- ``centroid_x``, ``centroid_y``: the luminance-weighted centre, in [0, 1] of the width and
  height (0.5 when centred or empty).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from planets_mlops.errors import DataError

FEATURES = (
    "brightness",
    "contrast",
    "red_mean",
    "green_mean",
    "blue_mean",
    "saturation",
    "dark_fraction",
    "sharpness",
    "horizontal_energy",
    "centroid_x",
    "centroid_y",
)
PROJECTION_DIM = 8
PROJECTION_SEED = 20_260_904
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_DARK = 0.1


def _as_batch(tensors: Any) -> np.ndarray:
    batch = np.asarray(tensors, dtype=np.float32)
    if batch.ndim == 3:
        batch = batch[None]
    if batch.ndim != 4 or batch.shape[-1] not in (1, 3) or batch.shape[1] < 3 or batch.shape[2] < 3:
        raise DataError(
            f"image features need model-input tensors shaped (images, height, width, 1 or 3) of at "
            f"least 3x3 pixels; got shape {batch.shape}."
        )
    return batch


def image_features(tensors: Any) -> np.ndarray:
    """The :data:`FEATURES` of each image, as a float64 array ``(images, len(FEATURES))``.

    Args:
        tensors: Model-input tensors ``(n, h, w, c)`` (or one ``(h, w, c)``), c 1 or 3.

    Raises:
        planets_mlops.errors.DataError: the array is not shaped like model inputs.
    """
    batch = _as_batch(tensors)
    n, height, width, channels = batch.shape
    if channels == 3:
        luma = batch @ _LUMA
        red, green, blue = (batch[..., c].mean(axis=(1, 2)) for c in range(3))
        r, g, b = batch[..., 0], batch[..., 1], batch[..., 2]
        # Element-wise max/min of the three planes: the same values as a reduction over the
        # last axis, which NumPy runs about 15 times slower on an axis of length 3.
        saturation = (np.maximum(np.maximum(r, g), b) - np.minimum(np.minimum(r, g), b)).mean(axis=(1, 2))
    else:
        luma = batch[..., 0]
        red = green = blue = luma.mean(axis=(1, 2))
        saturation = np.zeros(n, dtype=np.float32)
    luma = np.nan_to_num(luma, nan=0.0, posinf=1.0, neginf=0.0)
    brightness = luma.mean(axis=(1, 2))
    contrast = luma.std(axis=(1, 2))
    dark = (luma < _DARK).mean(axis=(1, 2))
    laplacian = (
        luma[:, 1:-1, :-2]
        + luma[:, 1:-1, 2:]
        + luma[:, :-2, 1:-1]
        + luma[:, 2:, 1:-1]
        - 4 * luma[:, 1:-1, 1:-1]
    )
    sharpness = laplacian.var(axis=(1, 2))
    dx = np.abs(np.diff(luma, axis=2)).mean(axis=(1, 2))
    dy = np.abs(np.diff(luma, axis=1)).mean(axis=(1, 2))
    total = dx + dy
    horizontal = np.divide(dx, total, out=np.full(n, 0.5, dtype=np.float32), where=total > 0)
    mass = luma.sum(axis=(1, 2))
    xs = (np.arange(width, dtype=np.float32) + 0.5) / width
    ys = (np.arange(height, dtype=np.float32) + 0.5) / height
    centroid_x = np.divide((luma.sum(axis=1) * xs).sum(axis=1), mass, out=np.full(n, 0.5), where=mass > 0)
    centroid_y = np.divide((luma.sum(axis=2) * ys).sum(axis=1), mass, out=np.full(n, 0.5), where=mass > 0)
    columns = [brightness, contrast, red, green, blue, saturation, dark, sharpness, horizontal]
    columns += [centroid_x, centroid_y]
    return np.stack([np.asarray(column, dtype=np.float64) for column in columns], axis=1)


def projection_matrix(embedding_dim: int, dim: int = PROJECTION_DIM) -> np.ndarray:
    """The fixed ``(embedding_dim, dim)`` Gaussian projection (a function of the sizes only).

    Training and serving derive the same matrix from the embedding size, so nothing but the
    size needs to ship with the model.
    """
    if embedding_dim < 1 or dim < 1:
        raise DataError(f"projection sizes must be positive; got {embedding_dim} -> {dim}.")
    rng = np.random.default_rng([PROJECTION_SEED, embedding_dim, dim])
    return rng.standard_normal((embedding_dim, dim)) / np.sqrt(dim)


def project_embeddings(embeddings: Any, dim: int = PROJECTION_DIM) -> np.ndarray:
    """Unit-length embeddings projected to ``dim`` dimensions (float64 ``(images, dim)``).

    Rows are scaled to unit length first (the guard's cosine geometry); all-zero rows stay
    zero; non-finite values are refused.
    """
    array = np.asarray(embeddings, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] == 0:
        raise DataError(f"embeddings must be 2-D (images, embedding size); got shape {array.shape}.")
    if not np.all(np.isfinite(array)):
        raise DataError("embeddings hold NaN or infinite values; the model's embedding is broken.")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    unit = np.divide(array, norms, out=np.zeros_like(array), where=norms > 0)
    return unit @ projection_matrix(array.shape[1], dim)
