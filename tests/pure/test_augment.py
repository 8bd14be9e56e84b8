"""Training augmentation (planets_mlops.augment) and the raw-image changes (imagechanges)."""

import io

import numpy as np
import pytest
from PIL import Image

from planets_mlops.app.dev.imagechanges import BENIGN, change_pixels, png_bytes
from planets_mlops.augment import CHANGES, apply_change, augment_batch, describe, gaussian_blur
from planets_mlops.errors import InvalidParameterError
from planets_mlops.knobs import PRESETS, TrainParams


def _planet(size: int = 32, channels: int = 3) -> np.ndarray:
    """A bright textured disc on black, like the data set's renders, as a float image."""
    y, x = np.mgrid[:size, :size]
    disc = ((x - size / 2) ** 2 + (y - size / 2) ** 2) < (size / 3) ** 2
    texture = 0.5 + 0.4 * np.sin(x / 2.0) * np.cos(y / 3.0)
    return np.repeat((disc * texture)[..., None], channels, axis=2).astype(np.float32)


def _batch(count: int = 16) -> np.ndarray:
    return np.stack([_planet() * (0.6 + 0.4 * i / count) for i in range(count)])


def test_a_seeded_augmentation_repeats_and_leaves_its_input_alone():
    batch = _batch()
    before = batch.copy()
    first = augment_batch(batch, np.random.default_rng(7))
    second = augment_batch(batch, np.random.default_rng(7))
    other = augment_batch(batch, np.random.default_rng(8))
    assert np.array_equal(first, second)
    assert not np.array_equal(first, other)
    assert np.array_equal(batch, before)
    assert first.dtype == np.float32 and first.shape == batch.shape
    assert first.min() >= 0.0 and first.max() <= 1.0
    # Some images change, and some stay as they were (the clean images are still learnt).
    changed = [not np.array_equal(a, b) for a, b in zip(first, batch)]
    assert 0 < sum(changed) < len(batch)


def test_no_augmentation_is_the_identity():
    batch = _batch()
    assert augment_batch(batch, np.random.default_rng(0), "none") is batch


@pytest.mark.parametrize("name", [change.name for change in CHANGES])
def test_each_change_does_what_its_name_says(name):
    image = _planet()
    rng = np.random.default_rng(0)
    changed = {
        "brightness": apply_change(image, "brightness", 0.5, rng),
        "contrast": apply_change(image, "contrast", 0.5, rng),
        "blur": apply_change(image, "blur", 1.0, rng),
        "noise": apply_change(image, "noise", 0.05, rng),
    }[name]
    if name == "brightness":
        assert changed.mean() == pytest.approx(image.mean() * 0.5, rel=1e-5)
    elif name == "contrast":
        assert changed.std() == pytest.approx(image.std() * 0.5, rel=1e-4)
        assert changed.mean() == pytest.approx(image.mean(), rel=1e-4)
    elif name == "blur":
        # Less high-frequency energy: neighbouring pixels differ less.
        assert np.abs(np.diff(changed, axis=1)).mean() < 0.8 * np.abs(np.diff(image, axis=1)).mean()
        assert changed.mean() == pytest.approx(image.mean(), rel=0.02)
    else:
        inside = image > 0.2
        assert np.std((changed - image)[inside]) == pytest.approx(0.05, rel=0.1)


def test_blur_of_a_constant_image_keeps_it_constant():
    flat = np.full((8, 8, 1), 0.25, np.float32)
    assert np.allclose(gaussian_blur(flat, 1.0), 0.25, atol=1e-6)


def test_an_unknown_change_names_the_ones_there_are():
    with pytest.raises(InvalidParameterError, match="sharpen.*brightness"):
        apply_change(_planet(), "sharpen", 1.0, np.random.default_rng(0))


def test_the_metadata_says_what_training_changes_and_what_it_leaves_to_labels():
    photometric = describe("photometric")
    names = [change["name"] for change in photometric["changes"]]
    assert names == ["brightness", "contrast", "blur", "noise"]
    assert photometric["set"] == "photometric" and 0 < photometric["probability"] < 1
    assert not {"hue", "channel_swap", "crop", "zoom"} & set(names)
    assert any("zoom" in item for item in photometric["not_covered"])
    assert describe("none")["changes"] == [] and describe("none")["probability"] == 0.0


def test_the_augment_knob_is_checked_and_the_reference_trains_without_it():
    assert TrainParams().augment == "photometric"
    with pytest.raises(InvalidParameterError, match="augment.*'jitter'.*'none', 'photometric'"):
        TrainParams(augment="jitter")
    assert PRESETS["reference"]["train_augment"] == "none"


def test_raw_changes_keep_the_image_format_and_do_what_they_say():
    pixels = (_planet(64) * 255).astype(np.uint8)
    for name, strength in BENIGN:
        changed = change_pixels(pixels, name, strength, seed=3)
        assert changed.dtype == np.uint8 and changed.shape == pixels.shape
        assert not np.array_equal(changed, pixels)
    assert np.array_equal(
        change_pixels(pixels, "noise", 25, seed=3), change_pixels(pixels, "noise", 25, seed=3)
    )
    contrast = change_pixels(pixels, "contrast", 0.5).astype(np.float64)
    assert contrast.std() < 0.6 * pixels.std()
    darker = change_pixels(pixels, "brightness", 0.4).astype(np.float64)
    assert darker.mean() == pytest.approx(0.4 * pixels.mean(), rel=0.02)
    gray = change_pixels(pixels[..., :1], "blur", 2.0)
    assert gray.shape == (64, 64, 1)
    decoded = np.asarray(Image.open(io.BytesIO(png_bytes(gray))))
    assert np.array_equal(decoded, gray[..., 0])


@pytest.mark.parametrize("name, strength", [("solarise", 1.0), ("noise", -1.0)])
def test_a_bad_raw_change_is_refused_by_name(name, strength):
    with pytest.raises(InvalidParameterError, match=name):
        change_pixels(np.zeros((4, 4, 3), np.uint8), name, strength)
