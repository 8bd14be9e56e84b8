"""Seeded training augmentation: benign photometric changes of the model's input tensors.

A camera that is a little noisier, blurrier, darker or flatter than the one the training
images came from still shows the same planet. Training on such changes teaches the
network to answer the same for them, and, as importantly for the open-set guard
(:mod:`planets_mlops.guard`), to give them nearly the same embedding, so that the guard
keeps them instead of calling them unknown.

What is *not* augmented, on purpose: colour balance (hue, white balance, swapped
channels) and zoom or crop (another focal length). Those change what an object looks
like, not only how well it is seen; the model learns them from labelled images of the new
instrument (the labelling loop), not from a guess here.

The changes work on the preprocessed tensor (``float32`` in ``[0, 1]``, shape
``(batch, size, size, channels)``), so training reads the same shards as before. Each
image gets each change with probability ``P_APPLY``, with a strength drawn uniformly from
its range; the draws come from one ``numpy`` generator seeded by the training seed, so a
seeded run is repeatable.

Sets (``TrainParams.augment``):

- ``"none"``: no augmentation.
- ``"photometric"``: :data:`PHOTOMETRIC` below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from planets_mlops.errors import InvalidParameterError
from planets_mlops.knobs import AUGMENT_SETS

NONE, PHOTOMETRIC = AUGMENT_SETS
SETS = AUGMENT_SETS

# Each change is applied to an image with this probability, independently of the others:
# a quarter of the images stay unchanged, so the clean distribution is still learnt.
P_APPLY = 0.3


@dataclass(frozen=True)
class Change:
    """One augmentation: its name, the range its strength is drawn from, what it does."""

    name: str
    low: float
    high: float
    description: str

    def describe(self) -> dict[str, Any]:
        """The change as JSON-ready metadata."""
        return {"name": self.name, "range": [self.low, self.high], "description": self.description}


# Ranges are in the tensor's own units. The serving-side changes they cover, measured on
# 128 px images resized to 32 px: Gaussian noise of sigma 25 (of 255) leaves about 0.05
# after the resize, a Gaussian blur of radius 2 about 0.5 px, contrast x0.5 and
# brightness x0.6 to x1.4 are the same factors.
CHANGES = (
    Change("brightness", 0.5, 1.4, "pixels times a factor (exposure), clipped to [0, 1]"),
    Change("contrast", 0.4, 1.3, "pixels pulled towards (or pushed from) the image's mean by a factor"),
    Change("blur", 0.0, 1.0, "Gaussian blur of this sigma, in pixels of the model input"),
    Change("noise", 0.0, 0.08, "additive Gaussian noise of this sigma, clipped to [0, 1]"),
)


# Fixed benign changes, in the same units: what the open-set guard is calibrated on (the
# validation images under each) and what the evaluation report's trade-off curve measures.
# They stand for a camera with noise of sigma 25, a blur of radius 2, half the contrast, or
# 60 % of the exposure, on the 128 px originals. Noise and blur are set a little above the
# figures above: the 128 px change then the resize is not quite the 32 px change of the
# same size (the resize samples the original without averaging), and the guard's image
# statistics (planets_mlops.imagestats) see the difference: calibrated on 0.05 and 0.5, a
# leave-Mercury-out guard kept 0.89 of the noisy and 0.84 of the blurred images its model
# classified right; on 0.07 and 0.8, 0.98 and 0.91 (seed 5241).
BENIGN = (("noise", 0.07), ("blur", 0.8), ("contrast", 0.5), ("brightness", 0.6))


def benign_changes(images: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """Each change of :data:`BENIGN` applied to every image of ``(N, H, W, C)``.

    Returns:
        ``"<name> <strength>"`` -> the changed copy of ``images``.
    """
    rng = np.random.default_rng(seed)
    return {
        f"{name} {strength:g}": np.stack([apply_change(image, name, strength, rng) for image in images])
        if len(images)
        else np.asarray(images, np.float32)
        for name, strength in BENIGN
    }


def check_augment(augment: str) -> str:
    """``augment`` if it names a set, else a clear error."""
    if augment not in SETS:
        raise InvalidParameterError(
            "augment",
            augment,
            f"one of {list(SETS)}",
            f"{PHOTOMETRIC!r} trains on benign changes of exposure, contrast, blur and noise; "
            f"{NONE!r} trains on the images as they are.",
        )
    return augment


def describe(augment: str) -> dict[str, Any]:
    """What training with ``augment`` applies, for the model's metadata and ``preprocess.json``."""
    check_augment(augment)
    changes = [] if augment == NONE else [change.describe() for change in CHANGES]
    return {
        "set": augment,
        "probability": 0.0 if augment == NONE else P_APPLY,
        "changes": changes,
        "not_covered": ["hue", "white balance", "channel swap", "zoom or crop (focal length)"],
    }


def _gaussian_kernel(sigma: float) -> np.ndarray:
    radius = max(1, int(np.ceil(2.5 * sigma)))
    x = np.arange(-radius, radius + 1, dtype=np.float32)
    kernel = np.exp(-0.5 * (x / max(sigma, 1e-6)) ** 2)
    return kernel / kernel.sum()


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of one ``(H, W, C)`` float image; edges reflect."""
    if sigma <= 0.05:
        return image
    kernel = _gaussian_kernel(sigma)
    radius = len(kernel) // 2
    out = image
    for axis in (0, 1):
        pad = [(0, 0)] * 3
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="reflect")
        length = out.shape[axis]
        out = sum(
            weight * np.take(padded, np.arange(i, i + length), axis=axis) for i, weight in enumerate(kernel)
        )
    return out.astype(np.float32)


def apply_change(image: np.ndarray, name: str, strength: float, rng: np.random.Generator) -> np.ndarray:
    """One change of :data:`CHANGES` on one ``(H, W, C)`` float image in ``[0, 1]``."""
    if name == "brightness":
        out = image * np.float32(strength)
    elif name == "contrast":
        mean = np.float32(image.mean())
        out = mean + (image - mean) * np.float32(strength)
    elif name == "blur":
        out = gaussian_blur(image, strength)
    elif name == "noise":
        out = image + rng.normal(0.0, strength, image.shape).astype(np.float32)
    else:
        raise InvalidParameterError("change", name, f"one of {[c.name for c in CHANGES]}")
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def augment_batch(images: np.ndarray, rng: np.random.Generator, augment: str = PHOTOMETRIC) -> np.ndarray:
    """A changed copy of a batch ``(N, H, W, C)``; the input is not modified.

    The number of draws does not depend on the pixel values, so the same generator state
    always gives the same changes.
    """
    if check_augment(augment) == NONE:
        return images
    out = np.array(images, dtype=np.float32, copy=True)
    for index in range(len(out)):
        applied = rng.random(len(CHANGES)) < P_APPLY
        strengths = rng.uniform([c.low for c in CHANGES], [c.high for c in CHANGES])
        for change, on, strength in zip(CHANGES, applied, strengths):
            if on:
                out[index] = apply_change(out[index], change.name, float(strength), rng)
    return out
