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


@functools.lru_cache(maxsize=16)
def _resize_plan(
    height: int, width: int, channels: int, size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What a resize of an image of this shape reads, and the weights it applies.

    Kept for the last 16 input shapes: a plan is ``44 x size^2 x channels`` bytes (0.14 MB at
    32x32 RGB, 6.6 MB at 224x224), and a service's uploads may come in any shape, so the
    cache stays small (a camera's traffic has one or two).

    ``index`` ``(2, 2 size, size, channels)``: the flat position of every sample a resize
    reads, left then right column of each output pixel, for the upper then the lower row
    (:func:`_resize_axis_weights`), so that one gather reads all four neighbours. The
    weights come expanded to the shapes they multiply: NumPy's broadcasting over a last
    axis of 3 channels ran three times slower than the same products on whole arrays.
    """
    y_lo, y_hi, y_w = _resize_axis_weights(height, size)
    x_lo, x_hi, x_w = _resize_axis_weights(width, size)
    rows = np.concatenate((y_lo, y_hi))[None, :, None, None]
    columns = np.stack((x_lo, x_hi))[:, None, :, None]
    index = (rows * width + columns) * channels + np.arange(channels)
    across = np.ascontiguousarray(np.broadcast_to(x_w[None, :, None], (2 * size, size, channels)))
    down = np.ascontiguousarray(np.broadcast_to(y_w[:, None, None], (size, size, channels)))
    for array in (index, across, down):
        array.flags.writeable = False
    return index, across, down


def resize_bilinear(image: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of an (H, W, C) array to (size, size, C) as ``float32``.

    Matches ``tf.image.resize(image, (size, size), "bilinear", antialias=False)``.
    """
    height, width, channels = image.shape
    index, across, down = _resize_plan(height, width, channels, size)
    # One gather of the four neighbours, then convert: only 4 x size x size samples become
    # float32 (uint8 -> float32 is exact, so the result is the same as converting first).
    # The upper and lower rows are interpolated across in one operation: every output is
    # computed by the same float32 operations as one row at a time, so to the same bits.
    left, right = np.take(image.reshape(-1), index).astype(np.float32)
    horizontal = left + (right - left) * across
    top, bottom = horizontal[:size], horizontal[size:]
    return top + (bottom - top) * down


def preprocess_image(
    source: ImageSource, config: PreprocessConfig = PreprocessConfig(), limits: ImageLimits = LIMITS
) -> np.ndarray:
    """Turn one image file into the model's input tensor, shape ``config.input_shape``.

    Raises:
        DataError: the input is not a decodable image, or is outside ``limits``.
    """
    return model_input(decode_image(source, grayscale=config.grayscale, limits=limits), config)


def model_input(pixels: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """Decoded pixels ``uint8`` (H, W, C) to the model's input tensor: resized, rescaled.

    The second half of :func:`preprocess_image`, for a caller that decoded the file itself
    with :func:`planets_mlops.imaging.decode_open` (the service, which opens each file once)
    or through :func:`planets_mlops.imaging.check_image` (``prepare_dataset``'s verification).
    """
    resized = resize_bilinear(pixels, config.image_size)
    return resized * np.float32(config.rescale)
