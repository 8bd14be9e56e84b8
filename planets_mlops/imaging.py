"""The one image decoder of the project, with the one set of limits it enforces.

Serving (``/predict``), ``prepare_dataset`` (through :func:`planets_mlops.preprocess.preprocess_image`
and the data set check) and the Label Studio import all open image files here, so an
image one of them accepts, the others accept too, and an image one refuses, they all
refuse for the same reason.

Every file goes through two stages:

1. :func:`read_header`: the format, colour mode and size, read from the file's header
   without decoding any pixel, and for a JPEG its scans, counted from its markers
   (:func:`jpeg_scans`). Formats outside :data:`FORMATS`, sizes outside
   :class:`ImageLimits` and JPEGs with more scans than ``max_scans`` are refused here, so
   a caller can also add up the cost of several files (the service's per-request budget,
   its light/heavy split) before decoding anything. A progressive JPEG costs pixels x
   scans, not pixels: each scan makes libjpeg walk the whole coefficient plane again.
2. :func:`decode`: the pixels as ``uint8`` (H, W, C), luma or RGB. High-bit-depth
   grayscale (16-bit PNG, Pillow modes ``I;16*`` and ``I``) is scaled to 8 bits
   (``round(v / 257)``, so an 8-bit image stored as 16 bits decodes to the same bytes);
   floating-point modes are refused with a message saying why. Only the first frame of
   an animated file is decoded.

Every failure, whatever the decoder raised, is an :class:`ImageError`
(a :class:`planets_mlops.errors.DataError`) whose message names the file, what is wrong
and what to send instead.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageFile

from planets_mlops.errors import DataError

ImageSource = bytes | bytearray | str | Path | BinaryIO

# The formats of the data set's extensions (planets_mlops.dataset.IMAGE_EXTENSIONS). Other
# Pillow plugins (DDS, ICO, TIFF, PSD, ...) are never tried: each is attack surface and
# none is needed for photos of planets.
FORMATS: tuple[str, ...] = ("JPEG", "PNG", "GIF", "BMP")
SEND = "Send a JPEG or PNG file"


@dataclass(frozen=True)
class ImageLimits:
    """The largest image any step accepts.

    The data set's images are 128x128 and the model sees them at ``image_size`` (32 by
    default): a photo larger than 4 MP carries nothing the model can use, and decoding one
    costs time and memory an attacker controls. One set for every step, so that an image
    the import accepts never fails a later ``prepare_dataset``.

    Attributes:
        max_side: Most pixels along either side (4096).
        max_pixels: Most pixels in one image, width x height (4,194,304 = 2048x2048).
        max_scans: Most scans in one JPEG (100). A baseline JPEG has one scan per
            colour component at most, a progressive one about 10 (Pillow, libjpeg's
            default script) to 20 (mozjpeg); each scan costs a pass over every block,
            so a file of thousands of 12-byte scans is a decompression bomb that no pixel
            limit sees.
    """

    max_side: int = 4096
    max_pixels: int = 2048 * 2048
    max_scans: int = 100


LIMITS = ImageLimits()


class ImageError(DataError):
    """An image file cannot be used: unreadable, of a refused format or mode, or too large."""


@dataclass(frozen=True)
class ImageHeader:
    """What the header of an image file says, before any pixel is decoded.

    Attributes:
        format: Pillow's format name (``JPEG``, ``PNG``, ...).
        mode: Pillow's colour mode.
        width: Pixels across.
        height: Pixels down.
        scans: Scans of a JPEG, counted from its markers (1 for other formats).
        progressive: A progressive JPEG (SOF2, SOF6, SOF10 or SOF14).
    """

    format: str
    mode: str
    width: int
    height: int
    scans: int = 1
    progressive: bool = False

    @property
    def pixels(self) -> int:
        """Width x height."""
        return self.width * self.height

    @property
    def cost(self) -> int:
        """Pixels x scans: what decoding it costs, in pixel passes."""
        return self.pixels * max(1, self.scans)


_PROGRESSIVE_SOF = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD9)})


# Where a marker may start: 0xFF followed by a code other than stuffing (0x00), fill (0xFF)
# or restart (0xD0-0xD7). A regular expression finds the next one in C, from where the walk
# is, so entropy-coded data full of 0xFF00 costs one pass over its bytes, not one Python
# step per byte (nor, as before, NumPy passes over the whole file at every call).
_MARKER = re.compile(rb"\xff[^\x00\xff\xd0-\xd7]")


def jpeg_scans(data: bytes, limit: int) -> tuple[int, bool]:
    """The scans of a JPEG and whether it is progressive, read from its markers only.

    Walks the marker segments from the start of the file, counting start-of-scan (SOS)
    markers, and stops at ``limit + 1`` scans, or at ``16 * limit`` segments (a file of
    thousands of tiny segments is no photo either, and is answered as too many scans), so
    a file of a million scans costs no more than one of ``limit``. Nothing is decoded; a
    damaged marker structure just ends the walk (the decoder then says what is wrong).

    Args:
        data: The complete JPEG file.
        limit: Stop once more than this many scans are seen.

    Returns:
        (scans, at most ``limit + 1``; progressive).
    """
    scans, progressive, position, end = 0, False, 2, len(data)
    for _ in range(16 * limit):
        found = _MARKER.search(data, position)
        if found is None:
            return scans, progressive
        start = found.end()  # just after the marker's code
        code = data[start - 1]
        if code == 0xD9:  # end of image
            return scans, progressive
        if code in _STANDALONE:
            position = start
            continue
        if start + 2 > end:
            return scans, progressive
        if code in _PROGRESSIVE_SOF:
            progressive = True
        elif code == 0xDA:
            scans += 1
            if scans > limit:
                return scans, progressive
        # After an SOS the entropy-coded data follows; the search skips it to the next marker.
        position = start + max(2, int.from_bytes(data[start : start + 2], "big"))
    return limit + 1, progressive


def _name(source: ImageSource) -> str:
    if isinstance(source, (str, Path)):
        return str(source)
    return str(getattr(source, "name", None) or "upload")


def _open(source: ImageSource) -> ImageFile.ImageFile:
    """``Image.open`` restricted to :data:`FORMATS`; the caller closes the image."""
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise ImageError(f"Empty image: got 0 bytes. {SEND}.")
        source = io.BytesIO(source)
    return Image.open(source, formats=FORMATS)


def _check(header: ImageHeader, name: str, limits: ImageLimits) -> None:
    if header.width <= 0 or header.height <= 0:
        raise ImageError(
            f"Cannot decode image {name}: it declares {header.width}x{header.height} pixels. {SEND}."
        )
    if max(header.width, header.height) > limits.max_side or header.pixels > limits.max_pixels:
        raise ImageError(
            f"Image {name} is too large: {header.width}x{header.height} pixels "
            f"({header.pixels / 1e6:.1f} MP); the limit is {limits.max_side} pixels per side and "
            f"{limits.max_pixels / 1e6:.1f} MP. Downscale it first: the model sees far fewer pixels."
        )
    if header.scans > limits.max_scans:
        raise ImageError(
            f"Image {name} has more than {limits.max_scans} JPEG scans; a photo has 1 to about 20, "
            "and each one costs a full decoding pass. Re-save it as a baseline JPEG or as PNG."
        )


def _refusal(name: str, exc: BaseException) -> ImageError:
    if isinstance(exc, Image.DecompressionBombError):
        return ImageError(
            f"Image {name} is too large: {exc} {SEND} of at most {LIMITS.max_pixels / 1e6:.1f} MP."
        )
    if isinstance(exc, Image.UnidentifiedImageError):
        return ImageError(
            f"Cannot decode image {name}: not a file of an accepted format ({', '.join(FORMATS)}). {SEND}."
        )
    return ImageError(
        f"Cannot decode image {name}: {type(exc).__name__}: {exc}. Expected a complete JPEG or PNG file."
    )


def _file_bytes(source: ImageSource) -> bytes:
    """The whole file behind ``source`` (a JPEG whose markers are to be walked)."""
    if isinstance(source, (bytes, bytearray)):
        return bytes(source)
    if isinstance(source, (str, Path)):
        return Path(source).read_bytes()
    position = source.tell()
    source.seek(0)
    try:
        return source.read()
    finally:
        source.seek(position)


def _header_of(img: Image.Image, source: ImageSource, limits: ImageLimits) -> ImageHeader:
    scans, progressive = 1, False
    if img.format == "JPEG":
        scans, progressive = jpeg_scans(_file_bytes(source), limits.max_scans)
    return ImageHeader(
        format=str(img.format),
        mode=img.mode,
        width=int(img.size[0]),
        height=int(img.size[1]),
        scans=scans,
        progressive=progressive,
    )


def open_image(source: ImageSource, limits: ImageLimits = LIMITS) -> tuple[ImageHeader, ImageFile.ImageFile]:
    """:func:`read_header`, with the file left open for :func:`decode_open` (the caller closes it).

    The service reads every header of a request before it decodes any pixel (its pixel
    budget); keeping the files open spares a second open and marker walk per image.

    Raises:
        ImageError: as :func:`read_header`.
    """
    name = _name(source)
    try:
        img = _open(source)
    except ImageError:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a refused file, never a crash
        raise _refusal(name, exc) from exc
    try:
        header = _header_of(img, source, limits)
        _check(header, name, limits)
    except BaseException as exc:
        img.close()
        if isinstance(exc, ImageError) or not isinstance(exc, Exception):
            raise
        raise _refusal(name, exc) from exc
    return header, img


def read_header(source: ImageSource, limits: ImageLimits = LIMITS) -> ImageHeader:
    """Format, mode and size of an image file, checked against ``limits``; no pixel is decoded.

    Raises:
        ImageError: empty, not of an accepted format, unreadable header, too large, or a
            JPEG of more than ``limits.max_scans`` scans.
    """
    header, img = open_image(source, limits)
    img.close()
    return header


def _to_8bit(img: Image.Image, name: str) -> Image.Image:
    """High-bit-depth grayscale scaled to ``L``; float modes refused; others unchanged."""
    if img.mode.startswith("I;16") or img.mode == "I":
        # 16-bit samples (PNG's only integer mode above 8 bits). Pillow's own I;16 -> L
        # conversion clips at 255 instead of scaling, which turns any 16-bit photo white.
        values = np.asarray(img).astype(np.int64)
        scaled = (np.clip(values, 0, 65535) + 128) // 257
        return Image.fromarray(scaled.astype(np.uint8), "L")
    if img.mode.startswith("F") or img.mode.startswith("I;32"):
        raise ImageError(
            f"Cannot decode image {name}: its pixels are {img.mode!r} (floating point or 32-bit), "
            f"which has no defined 0-255 scale. {SEND} with 8 or 16 bits per sample."
        )
    return img


def decode(source: ImageSource, grayscale: bool = True, limits: ImageLimits = LIMITS) -> np.ndarray:
    """Decode an image file to a ``uint8`` array of shape (H, W, 1) or (H, W, 3).

    The header is checked first (:func:`read_header`'s rules), then the first frame is
    decoded (:func:`decode_open`).

    Raises:
        ImageError: the file is refused (see :func:`read_header`), truncated or corrupt, or
            its pixels have no 8-bit meaning.
    """
    _, img = open_image(source, limits)
    with img:
        return decode_open(img, _name(source), grayscale)


def decode_open(img: ImageFile.ImageFile, name: str, grayscale: bool = True) -> np.ndarray:
    """The pixels of an image from :func:`open_image`, ``uint8`` (H, W, 1) or (H, W, 3).

    JPEG luma comes straight from libjpeg's fast integer DCT, as TensorFlow's
    ``decode_jpeg(channels=1)`` computes it; transparent pixels are composited on black,
    the data set's background. Decodes ``img`` in place; the caller closes it.

    Args:
        img: The open image, its header checked.
        name: The file's name in error messages.
        grayscale: Luma (H, W, 1) rather than RGB (H, W, 3).

    Raises:
        ImageError: the file is truncated or corrupt, or its pixels have no 8-bit meaning.
    """
    mode = "L" if grayscale else "RGB"
    try:
        if img.format == "JPEG" and img.mode in ("RGB", "L", "YCbCr"):
            # Ask libjpeg for the target colour space directly (luma for "L"), exactly
            # as TensorFlow's decoder does; no scaling because the size is unchanged.
            img.draft(mode, img.size)
            if grayscale:
                # (scale 1, draft on): libjpeg's fast integer DCT, TensorFlow's default.
                # Draft mode also skips fancy chroma upsampling, which luma never uses.
                img.decoderconfig = (1, 1)
        img.load()
        decoded = _to_8bit(img, name)
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
    except ImageError:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a refused file, never a crash
        raise _refusal(name, exc) from exc
    if array.ndim == 2:
        array = array[:, :, None]
    return array


def check_image(
    source: ImageSource, limits: ImageLimits = LIMITS, keep: Callable[[np.ndarray], None] | None = None
) -> str | None:
    """Why ``source`` is not a usable image (the :class:`ImageError` message), or None.

    Decodes the file fully with :func:`decode` (RGB), exactly as training and serving will;
    ``keep``, when given, is called with those pixels of a good image (so that a caller that
    needs them does not decode the file again).
    """
    try:
        pixels = decode(source, grayscale=False, limits=limits)
    except ImageError as exc:
        return str(exc)
    if keep is not None:
        keep(pixels)
    return None
