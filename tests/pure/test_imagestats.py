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
