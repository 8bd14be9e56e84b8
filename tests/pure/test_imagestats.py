"""Image statistics of the guard (planets_mlops.imagestats): what they keep and ignore."""

from __future__ import annotations

import numpy as np
import pytest

from planets_mlops.augment import apply_change
from planets_mlops.errors import DataError
from planets_mlops.imagestats import STATISTICS, image_statistics


def disc(tint: float = 0.1, brightness: float = 0.7, size: int = 32, seed: int = 0) -> np.ndarray:
    """A textured disc on black (one model input), warmer than grey by ``tint``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    inside = (yy - size / 2 + 0.5) ** 2 + (xx - size / 2 + 0.5) ** 2 < (size * 0.4) ** 2
    grey = brightness * (1 + rng.normal(0.0, 0.1, (size, size)))
    image = np.zeros((size, size, 3), np.float32)
    image[inside] = np.stack([grey * (1 + tint), grey, grey], -1)[inside]
    return np.clip(image, 0.0, 1.0)


def column(name: str) -> int:
    return STATISTICS.index(name)


def test_exposure_and_contrast_leave_the_statistics_unchanged():
    image = disc()
    base = image_statistics(image[None])[0]
    rng = np.random.default_rng(0)
    for name, strength in (("brightness", 0.6), ("contrast", 0.5)):
        changed = image_statistics(apply_change(image, name, strength, rng)[None])[0]
        np.testing.assert_allclose(changed, base, atol=1e-4, err_msg=name)
    np.testing.assert_allclose(image_statistics((image * 255.0)[None])[0], base, atol=1e-6)  # any scale


def test_the_colour_balance_of_the_disc_tells_a_grey_body_from_a_warm_one():
    grey = image_statistics(np.stack([disc(0.0, seed=s) for s in range(5)]))
    warm = image_statistics(np.stack([disc(0.05, seed=s) for s in range(5)]))
    for name in ("disc_red_green", "red_green"):
        assert np.all(np.abs(grey[:, column(name)]) < 1e-3)
        assert np.all(warm[:, column(name)] > 0.01)
    np.testing.assert_allclose(warm[:, column("disc_blue_green")], 0.0, atol=1e-6)


def test_a_grayscale_input_has_no_colour_and_a_blank_one_is_finite():
    stats = image_statistics(disc()[None, ..., :1])
    for name in ("red_green", "blue_green", "disc_red_green", "disc_blue_green"):
        assert stats[0, column(name)] == 0.0
    blank = image_statistics(np.zeros((2, 16, 16, 3)))
    assert blank.shape == (2, len(STATISTICS)) and np.all(np.isfinite(blank))


@pytest.mark.parametrize(
    ("images", "match"),
    [
        (np.zeros((4, 4)), r"shape \(images, height, width, 1 or 3 channels\); got \(4, 4\)"),
        (np.zeros((1, 8, 8, 2)), "got \\(1, 8, 8, 2\\)"),
        (np.full((1, 8, 8, 3), np.nan), "NaN or infinite"),
    ],
)
def test_bad_inputs_are_named(images, match):
    with pytest.raises(DataError, match=match):
        image_statistics(images)


def _plain_statistics(images: np.ndarray) -> np.ndarray:
    """The statistics computed the plain way: np.mean, np.std, one quantile read per range."""
    from planets_mlops.imagestats import _quantile

    batch = np.asarray(images, np.float64)
    count, pixels = len(batch), batch.shape[1] * batch.shape[2]
    colour = batch.shape[-1] == 3
    grey = ((batch[..., 0] + batch[..., 1] + batch[..., 2]) / 3.0 if colour else batch[..., 0]).reshape(
        count, pixels
    )
    mean, spread = grey.mean(axis=1, keepdims=True), grey.std(axis=1, keepdims=True)
    scale = np.maximum(spread, 1e-6 * np.maximum(np.abs(grey).max(axis=1, keepdims=True), 1.0))
    z = (grey - mean) / scale
    ordered = np.sort(z, axis=1)
    levels = np.asarray([round(0.05 * step, 2) for step in range(8, 20)] + [0.05, 0.95])
    read = _quantile(ordered, np.zeros((count, 1), np.int64), np.full((count, 1), pixels), levels)
    out = np.zeros((count, len(STATISTICS)))
    out[:, :12] = read[:, :12]
    if colour:
        red_green = (batch[..., 0] - batch[..., 1]).reshape(count, pixels) / scale
        blue_green = (batch[..., 2] - batch[..., 1]).reshape(count, pixels) / scale
        out[:, 12], out[:, 13] = red_green.mean(axis=1), blue_green.mean(axis=1)
        background, bright = read[:, -2], read[:, -1]
        inside_disc = z > (background + 0.5 * (bright - background))[:, None]
        inside = inside_disc.sum(axis=1)
        median = _quantile(ordered, (pixels - inside)[:, None], inside[:, None], np.asarray([0.5]))[:, 0]
        above = np.maximum(median - background, 1e-6)
        for offset, channel in ((14, red_green), (15, blue_green)):
            total = np.where(inside_disc, channel, 0.0).sum(axis=1)
            out[:, offset] = np.where(inside > 0, total / np.maximum(inside, 1) / above, 0.0)
    upper = z > 0
    above_mean = upper.sum(axis=1)
    counted = np.maximum(above_mean, 1)
    average = np.where(upper, z, 0.0).sum(axis=1) / counted
    deviation = np.sqrt(np.where(upper, (z - average[:, None]) ** 2, 0.0).sum(axis=1) / counted)
    tenth, ninetieth = _quantile(
        ordered, (pixels - above_mean)[:, None], above_mean[:, None], np.asarray([0.1, 0.9])
    ).T
    for offset, value in enumerate((deviation, tenth, ninetieth)):
        out[:, 16 + offset] = np.where(above_mean > 0, value, 0.0)
    return out


@pytest.mark.parametrize("channels", [1, 3])
def test_the_statistics_are_those_of_the_plain_computation_to_the_bit(channels: int) -> None:
    """The guard's thresholds were calibrated on these numbers: a faster computation keeps them."""
    rng = np.random.default_rng(7)
    images = [
        np.stack([disc(tint, brightness, seed=seed) for seed in range(5)])
        for tint, brightness in ((0.1, 0.7), (0.0, 0.3), (0.3, 0.9))
    ]
    images += [
        rng.random((8, 32, 32, 3), dtype=np.float32),
        np.zeros((2, 32, 32, 3), np.float32),
        np.full((1, 8, 8, 3), 0.5, np.float32),
        rng.normal(size=(3, 17, 9, 3)) * 1e3,
    ]
    for batch in images:
        batch = batch[..., :channels]
        assert image_statistics(batch).tobytes() == _plain_statistics(batch).tobytes()
        assert image_statistics(batch[:1]).tobytes() == image_statistics(batch)[:1].tobytes()
