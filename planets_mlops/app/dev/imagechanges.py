"""Benign changes of a raw image, as another camera would take it: for measuring, not training.

The open-set guard must keep an image of a known class that is a little noisier, blurrier,
darker or flatter than the training images (:mod:`planets_mlops.guard`); the benchmark
(``benchmarks/bench_guard.py``) and the tests apply these changes to the raw ``uint8`` image,
before the model's preprocessing, as a camera would, and encode the result as PNG bytes
when it must travel as a file (to the service, for instance).

Each change is ``name`` and a strength:

- ``noise``: additive Gaussian noise of this sigma (in 0..255 pixel units), seeded;
- ``blur``: Pillow's Gaussian blur of this radius;
- ``contrast``: Pillow's contrast enhancer with this factor (towards the mean grey);
- ``brightness``: Pillow's brightness enhancer with this factor.

:data:`BENIGN` lists the changes of the guard's targets.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from planets_mlops.errors import InvalidParameterError

NAMES = ("noise", "blur", "contrast", "brightness")

# The benign changes of the guard's targets: noise sigma 25, blur radius 2, contrast x0.5.
BENIGN = (("noise", 25.0), ("blur", 2.0), ("contrast", 0.5))


def change_pixels(pixels: np.ndarray, name: str, strength: float, seed: int = 0) -> np.ndarray:
    """The ``uint8`` image ``(H, W, C)`` (or ``(H, W)``) after one change.

    Args:
        pixels: The image, ``uint8``.
        name: One of :data:`NAMES`.
        strength: The change's sigma, radius or factor (see the module docstring).
        seed: Seeds the noise.

    Returns:
        A new ``uint8`` array of the same shape.

    Raises:
        InvalidParameterError: an unknown ``name`` or a negative ``strength``.
    """
    if name not in NAMES:
        raise InvalidParameterError("change", name, f"one of {list(NAMES)}")
    if not strength >= 0:
        raise InvalidParameterError(name, strength, "a number >= 0")
    pixels = np.asarray(pixels, dtype=np.uint8)
    if name == "noise":
        noise = np.random.default_rng(seed).normal(0.0, strength, pixels.shape)
        return np.clip(np.rint(pixels + noise), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels.squeeze(-1) if pixels.ndim == 3 and pixels.shape[-1] == 1 else pixels)
    if name == "blur":
        image = image.filter(ImageFilter.GaussianBlur(strength))
    elif name == "contrast":
        image = ImageEnhance.Contrast(image).enhance(strength)
    else:
        image = ImageEnhance.Brightness(image).enhance(strength)
    return np.asarray(image, dtype=np.uint8).reshape(pixels.shape)


def png_bytes(pixels: np.ndarray) -> bytes:
    """The ``uint8`` image as PNG bytes (lossless), e.g. to send to the service."""
    pixels = np.asarray(pixels, dtype=np.uint8)
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()
