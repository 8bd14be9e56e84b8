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

import functools
from dataclasses import asdict, dataclass

import numpy as np

from planets_mlops.errors import InvalidParameterError
from planets_mlops.imaging import LIMITS, ImageLimits, ImageSource, decode


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


def decode_image(source: ImageSource, grayscale: bool = True, limits: ImageLimits = LIMITS) -> np.ndarray:
    """Decode an image file to a ``uint8`` array of shape (H, W, C), within the limits.

    The project's one decoder, :func:`planets_mlops.imaging.decode` (its format, size and
    bit-depth rules apply).

    Raises:
        DataError: the bytes are not a usable image (not an image, truncated, empty, of a
            refused format or too large); an :class:`planets_mlops.imaging.ImageError`.
    """
    return decode(source, grayscale=grayscale, limits=limits)


@functools.lru_cache(maxsize=256)
def _resize_axis_weights(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lower/upper source indices and interpolation weights, TF half-pixel-centre style.

    Kept per size (read-only): a service resizes photos of a few sizes, and computing them
    was a fifth of a resize.
    """
    scale = np.float32(in_size / out_size)
    coords = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    floor = np.floor(coords)
    lower = np.maximum(floor, 0).astype(np.int64)
    upper = np.minimum(np.ceil(coords), in_size - 1).astype(np.int64)
    weights = (coords - floor).astype(np.float32)
    for array in (lower, upper, weights):
        array.flags.writeable = False
    return lower, upper, weights


def resize_bilinear(image: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of an (H, W, C) array to (size, size, C) as ``float32``.

    Matches ``tf.image.resize(image, (size, size), "bilinear", antialias=False)``.
    """
    height, width = image.shape[:2]
    y_lo, y_hi, y_w = _resize_axis_weights(height, size)
    x_lo, x_hi, x_w = _resize_axis_weights(width, size)
    # Gather the four neighbours first, then convert: only size x size pixels become
    # float32 (uint8 -> float32 is exact, so the result is the same as converting first).
    upper_rows, lower_rows = image[y_lo], image[y_hi]
    top_left = upper_rows[:, x_lo].astype(np.float32)
    top_right = upper_rows[:, x_hi].astype(np.float32)
    bottom_left = lower_rows[:, x_lo].astype(np.float32)
    bottom_right = lower_rows[:, x_hi].astype(np.float32)
    x_w = x_w[None, :, None]
    top = top_left + (top_right - top_left) * x_w
    bottom = bottom_left + (bottom_right - bottom_left) * x_w
    return top + (bottom - top) * y_w[:, None, None]


def preprocess_image(
    source: ImageSource, config: PreprocessConfig = PreprocessConfig(), limits: ImageLimits = LIMITS
) -> np.ndarray:
    """Turn one image file into the model's input tensor, shape ``config.input_shape``.

    Raises:
        DataError: the input is not a decodable image, or is outside ``limits``.
    """
    pixels = decode_image(source, grayscale=config.grayscale, limits=limits)
    resized = resize_bilinear(pixels, config.image_size)
    return resized * np.float32(config.rescale)
