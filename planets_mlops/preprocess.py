"""Bytes to tensor: the one preprocessing function shared by training and serving.

``prepare_dataset`` and the BentoML service both call :func:`preprocess_image`, so the
tensor a model is trained on and the tensor it is served are computed by the same code.
It needs only Pillow and NumPy (no TensorFlow), which keeps the serving process small.

For grayscale, the function reproduces, bit for bit, what the reference experiment computed
with TensorFlow: ``decode_jpeg(channels=1)`` (libjpeg's fast integer DCT, straight to luma),
``tf.image.resize(method="bilinear", antialias=False)`` (half-pixel centres) and a 1/255
rescale. Pillow's ``draft("L")`` asks libjpeg for the Y channel, and its draft decoder flag
selects the same fast DCT that TensorFlow uses by default.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from planets_mlops.errors import DataError, InvalidParameterError

ImageSource = bytes | str | Path | BinaryIO

# Decompression-bomb guard: 128x128 is the data set's size. Pillow warns above this many
# pixels and refuses above twice as many (80 MP), far below what exhausts memory.
Image.MAX_IMAGE_PIXELS = 40_000_000


@dataclass(frozen=True)
class PreprocessConfig:
    """How raw images become model input. Stored with the data set and the model."""

    image_size: int = 32
    grayscale: bool = True
    rescale: float = 1.0 / 255.0

    def __post_init__(self) -> None:
        """Check the fields.

        Raises:
            InvalidParameterError: ``image_size`` is not a positive integer, or ``rescale``
                is not positive.
        """
        if not isinstance(self.image_size, int) or self.image_size <= 0:
            raise InvalidParameterError(
                "image_size",
                self.image_size,
                "a positive integer (pixels per side)",
                "The reference experiment uses 32.",
            )
        if not self.rescale > 0:
            raise InvalidParameterError(
                "rescale", self.rescale, "a positive number", "Use 1/255 to scale pixels to [0, 1]."
            )

    @property
    def channels(self) -> int:
        """Colour channels of the model input: 1 for grayscale, 3 for RGB."""
        return 1 if self.grayscale else 3

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Shape of one model input tensor: ``(image_size, image_size, channels)``."""
        return (self.image_size, self.image_size, self.channels)

    def to_dict(self) -> dict:
        """The config as a JSON-ready dict (what ``preprocess.json`` stores next to a data set or model)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> PreprocessConfig:
        """Read a config written by :meth:`to_dict`.

        Args:
            data: A dict with ``image_size``, ``grayscale`` and ``rescale``.

        Returns:
            The validated config.

        Raises:
            KeyError: a field is missing.
            InvalidParameterError: a field has an invalid value.
        """
        return cls(
            image_size=int(data["image_size"]),
            grayscale=bool(data["grayscale"]),
            rescale=float(data["rescale"]),
        )


def decode_image(source: ImageSource, grayscale: bool = True) -> np.ndarray:
    """Decode an image file to a ``uint8`` array of shape (H, W, C).

    Raises:
        DataError: the bytes are not a readable image (not an image, truncated, empty).
    """
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise DataError("Empty image: got 0 bytes. Send a JPEG or PNG file.")
        source = io.BytesIO(source)
    try:
        with Image.open(source) as img:
            mode = "L" if grayscale else "RGB"
            if img.format == "JPEG" and img.mode in ("RGB", "L", "YCbCr"):
                # Ask libjpeg for the target colour space directly (luma for "L"), exactly
                # as TensorFlow's decoder does; no scaling because the size is unchanged.
                img.draft(mode, img.size)
                if grayscale:
                    # (scale 1, draft on): libjpeg's fast integer DCT, TensorFlow's default.
                    # Draft mode also skips fancy chroma upsampling, which luma never uses.
                    img.decoderconfig = (1, 1)
            img.load()
            decoded: Image.Image = img
            if decoded.mode != mode:
                if decoded.mode in ("RGBA", "LA", "PA") or (
                    decoded.mode == "P" and "transparency" in decoded.info
                ):
                    # Composite on black, the data set's background, rather than on garbage.
                    decoded = decoded.convert("RGBA")
                    background = Image.new("RGBA", decoded.size, (0, 0, 0, 255))
                    decoded = Image.alpha_composite(background, decoded)
                decoded = decoded.convert(mode)
            array = np.asarray(decoded, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        name = getattr(source, "name", None) or "upload"
        raise DataError(
            f"Cannot decode image {name!s}: {exc}. Expected a complete JPEG or PNG file."
        ) from exc
    if array.ndim == 2:
        array = array[:, :, None]
    return array


def _resize_axis_weights(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lower/upper source indices and interpolation weights, TF half-pixel-centre style."""
    scale = np.float32(in_size / out_size)
    coords = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    floor = np.floor(coords)
    lower = np.maximum(floor, 0).astype(np.int64)
    upper = np.minimum(np.ceil(coords), in_size - 1).astype(np.int64)
    return lower, upper, (coords - floor).astype(np.float32)


def resize_bilinear(image: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of an (H, W, C) array to (size, size, C) as ``float32``.

    Matches ``tf.image.resize(image, (size, size), "bilinear", antialias=False)``.
    """
    height, width = image.shape[:2]
    data = image.astype(np.float32)
    y_lo, y_hi, y_w = _resize_axis_weights(height, size)
    x_lo, x_hi, x_w = _resize_axis_weights(width, size)
    top_left = data[y_lo][:, x_lo]
    top_right = data[y_lo][:, x_hi]
    bottom_left = data[y_hi][:, x_lo]
    bottom_right = data[y_hi][:, x_hi]
    x_w = x_w[None, :, None]
    top = top_left + (top_right - top_left) * x_w
    bottom = bottom_left + (bottom_right - bottom_left) * x_w
    return top + (bottom - top) * y_w[:, None, None]


def preprocess_image(source: ImageSource, config: PreprocessConfig = PreprocessConfig()) -> np.ndarray:
    """Turn one image file into the model's input tensor, shape ``config.input_shape``.

    Raises:
        DataError: the input is not a decodable image.
    """
    pixels = decode_image(source, grayscale=config.grayscale)
    resized = resize_bilinear(pixels, config.image_size)
    return resized * np.float32(config.rescale)
