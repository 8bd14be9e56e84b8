"""What an image looks like, independent of the camera's exposure and contrast. NumPy only.

The open-set guard (:mod:`planets_mlops.guard`) compares two things with the training
images: the model's embedding of an image, and these *image statistics* of the model input
itself. The embedding holds what tells the known classes apart and nothing else: a model
that never saw Mercury has no reason to tell it from the Moon, and gives Mercury's images
the Moon's embedding. The statistics keep what the embedding may drop: the shape of the
brightness distribution and the colour balance of the disc. Leaving Mercury out of training
(``benchmarks/bench_guard.py``), the embedding guard kept every Mercury image as the Moon;
the statistics of a Mercury image (a neutral grey disc) lie away from every Moon image's
(a warmer tint, maria).

They change little under the benign changes of a camera the guard must keep
(:data:`planets_mlops.augment.BENIGN`): each image's brightness is standardised (its mean
and spread taken out), so another exposure or a lower contrast gives the same numbers, and
noise and blur move quantiles of a thousand pixels little.

:func:`image_statistics` gives, per image (:data:`STATISTICS` names them):

- ``q40`` ... ``q95``: 12 quantiles of the standardised grey level (mean of the channels,
  minus the image's mean, over its standard deviation), the disc's part of the image;
- ``red_green``, ``blue_green``: the image's mean red-minus-green and blue-minus-green, over
  the grey level's standard deviation;
- ``disc_red_green``, ``disc_blue_green``: the same over the disc only (the pixels brighter
  than halfway between the background and the bright end), over the disc's brightness above
  the background;
- ``disc_std``, ``disc_q10``, ``disc_q90``: the spread and two quantiles of the standardised
  grey levels above the image's mean. (Not their mean: noise moves it more than it moves the
  mean of another body's.)

A grayscale model's inputs have no colour: their four colour statistics are 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from planets_mlops.errors import DataError

VERSION = "planets-image-stats/1"
# The quantiles below 0.40 fall on the background and the limb of the disc: what they hold
# is the disc's size and the sharpness of its edge, which blur changes and which do not tell
# the bodies apart (their discs are all of one size), so they are left out.
QUANTILES = tuple(round(0.05 * step, 2) for step in range(8, 20))
STATISTICS = (
    *(f"q{round(q * 100):02d}" for q in QUANTILES),
    "red_green",
    "blue_green",
    "disc_red_green",
    "disc_blue_green",
    "disc_std",
    "disc_q10",
    "disc_q90",
)
# A spread or brightness below this (in the input's units over its own range) is none.
_EPSILON = 1e-6
_LEVELS = np.asarray((*QUANTILES, 0.05, 0.95))
_MEDIAN = np.asarray((0.5,))
_UPPER = np.asarray((0.1, 0.9))
_LEVELS_UPPER = np.concatenate((_LEVELS, _UPPER))


def image_statistics(images: Any) -> np.ndarray:
    """The statistics of each model input, float64 ``(n, len(STATISTICS))``.

    Args:
        images: Model inputs ``(n, height, width, channels)`` (1 or 3 channels), any scale.

    Raises:
        DataError: not a batch of images, or non-finite values.
    """
    batch = np.asarray(images, dtype=np.float64)
    if batch.ndim != 4 or batch.shape[-1] not in (1, 3) or min(batch.shape[1:3], default=0) < 2:
        raise DataError(
            f"Image statistics need model inputs of shape (images, height, width, 1 or 3 channels); "
            f"got {batch.shape}."
        )
    if not np.all(np.isfinite(batch)):
        raise DataError("The images hold NaN or infinite values: preprocess them before scoring.")
    count, pixels = len(batch), batch.shape[1] * batch.shape[2]
    # The channels' mean, added one by one: NumPy's reduction over a last axis of 3 is slow.
    grey = (
        batch[..., 0] if batch.shape[-1] == 1 else (batch[..., 0] + batch[..., 1] + batch[..., 2]) / 3.0
    ).reshape(count, pixels)
    # grey.mean() and grey.std() as NumPy computes them (the same sums and divisions, so the
    # same bits), the mean computed once and the deviations from it kept for z.
    mean = np.add.reduce(grey, axis=1, keepdims=True) / pixels
    centred = grey - mean
    spread = np.sqrt(np.add.reduce(np.square(centred), axis=1, keepdims=True) / pixels)
    scale = np.maximum(spread, _EPSILON * np.maximum(np.abs(grey).max(axis=1, keepdims=True), 1.0))
    z = centred / scale
    # One sort per image; every quantile below is read off it (NumPy's linear interpolation).
    ordered = np.sort(z, axis=1)
    upper = z > 0
    above_mean = upper.sum(axis=1)
    # The levels over the whole image and the two over the values above the mean, in one call.
    starts = np.zeros((count, len(_LEVELS) + len(_UPPER)), np.int64)
    starts[:, len(_LEVELS) :] = (pixels - above_mean)[:, None]
    counts = np.full(starts.shape, pixels)
    counts[:, len(_LEVELS) :] = above_mean[:, None]
    read = _quantile(ordered, starts, counts, _LEVELS_UPPER)
    levels = read[:, : len(_LEVELS)]
    out = np.zeros((count, len(STATISTICS)), np.float64)
    out[:, : len(QUANTILES)] = levels[:, : len(QUANTILES)]
    colour = len(QUANTILES)
    if batch.shape[-1] == 3:
        red_green = (batch[..., 0] - batch[..., 1]).reshape(count, pixels) / scale
        blue_green = (batch[..., 2] - batch[..., 1]).reshape(count, pixels) / scale
        out[:, colour] = np.add.reduce(red_green, axis=1) / pixels  # their mean, as NumPy's
        out[:, colour + 1] = np.add.reduce(blue_green, axis=1) / pixels
        # The disc: brighter than halfway between the background (5 %) and the bright end (95 %).
        background, bright = levels[:, -2], levels[:, -1]
        disc = z > (background + 0.5 * (bright - background))[:, None]
        inside = disc.sum(axis=1)
        some = inside > 0
        median = _quantile(ordered, (pixels - inside)[:, None], inside[:, None], _MEDIAN)[:, 0]
        above = np.maximum(median - background, _EPSILON)  # in units of the spread
        for offset, channel in ((2, red_green), (3, blue_green)):
            total = np.where(disc, channel, 0.0).sum(axis=1)
            out[:, colour + offset] = np.where(some, total / np.maximum(inside, 1) / above, 0.0)
    some = above_mean > 0
    counted = np.maximum(above_mean, 1)
    average = np.where(upper, z, 0.0).sum(axis=1) / counted
    deviation = np.sqrt(np.where(upper, (z - average[:, None]) ** 2, 0.0).sum(axis=1) / counted)
    tenth, ninetieth = read[:, len(_LEVELS) :].T
    for offset, value in enumerate((deviation, tenth, ninetieth)):
        out[:, colour + 4 + offset] = np.where(some, value, 0.0)
    return out


def _quantile(ordered: np.ndarray, start: np.ndarray, count: np.ndarray, qs: np.ndarray) -> np.ndarray:
    """Quantiles ``qs`` of each row's ``count`` values from ``start`` of its sorted row, ``(n, len(qs))``.

    ``start`` and ``count`` are ``(n, 1)``, or ``(n, len(qs))`` for a range per quantile.
    NumPy's linear interpolation; a row with no values reads its first one (callers mask
    it). Indexes the flat array: a single image's statistics are a few dozen small NumPy
    calls, so each call counts.
    """
    rows, width = ordered.shape
    last = np.maximum(count - 1, 0)
    position = start + qs * last
    low = np.minimum(position.astype(np.int64), width - 1)  # non-negative: floor
    fraction = position - low
    high = np.minimum(np.minimum(low + 1, start + last), width - 1)
    flat = ordered.ravel()
    offset = np.arange(0, rows * width, width)[:, None]
    return flat[offset + low] * (1.0 - fraction) + flat[offset + high] * fraction
