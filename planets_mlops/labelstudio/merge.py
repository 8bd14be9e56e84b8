"""Write labelled images into a copy of a class-per-folder data set, named by content hash.

Imported files are called ``ls-<first 20 hex of sha256>.<ext>``: importing the same image
twice writes the same file, so a retried import yields byte-identical folders and the same
DVC hash.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from planets_mlops.dataset import IGNORED_NAMES, IMAGE_EXTENSIONS
from planets_mlops.labelstudio.labels import LabelledImage

log = logging.getLogger(__name__)

PREFIX = "ls-"
_FORMAT_EXT = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "BMP": ".bmp"}


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``: the content key of an image in the data set."""
    return hashlib.sha256(data).hexdigest()


def hash_dataset(root: Path) -> dict[str, str]:
    """SHA-256 of every image file under ``root/<Class>/`` -> its class.

    When the same bytes sit in two classes (a conflict already in the data), the first
    class in sorted order is reported; the import then treats the image as present.

    Args:
        root: Class-per-folder data set.

    Returns:
        Hex SHA-256 -> class name, for every image file.
    """
    hashes: dict[str, str] = {}
    for class_dir in sorted(p for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in sorted(class_dir.iterdir()):
            if path.is_file() and path.name not in IGNORED_NAMES and path.suffix.lower() in IMAGE_EXTENSIONS:
                hashes.setdefault(sha256_bytes(path.read_bytes()), class_dir.name)
    return hashes


def image_extension(data: bytes) -> str | None:
    """File extension for usable image bytes (by format, not by URL), else None.

    Usable means what training and serving accept: the project's one decoder
    (:mod:`planets_mlops.imaging`: its formats, size limits and complete pixel data).

    Args:
        data: Bytes fetched for a task's image.

    Returns:
        ``.jpg``, ``.png``, ``.gif`` or ``.bmp``; None when the bytes do not decode, are
        of another format or over the image limits.
    """
    from planets_mlops.imaging import ImageError, decode, read_header

    try:
        fmt = read_header(data).format
        decode(data, grayscale=False)
    except ImageError:
        return None
    return _FORMAT_EXT.get(fmt)


def imported_name(sha256: str, extension: str) -> str:
    """File name of an imported image: ``ls-`` + the first 20 hex digits of its hash + extension.

    Args:
        sha256: Hex SHA-256 of the image bytes.
        extension: File extension with its dot, as :func:`image_extension` returns it.

    Returns:
        The same name for the same bytes, so a retried import writes identical files.
    """
    return f"{PREFIX}{sha256[:20]}{extension}"


@dataclass
class MergeResult:
    """Sizes of the merged data set."""

    num_base: int
    num_added: int
    class_counts: dict[str, int]

    @property
    def num_files(self) -> int:
        """Files in the merged data set: base files plus added images."""
        return self.num_base + self.num_added


def merge_images(base: Path, out: Path, images: list[tuple[LabelledImage, bytes, str]]) -> MergeResult:
    """Copy ``base`` to ``out`` (replaced if present) and add ``images``.

    Args:
        base: class-per-folder data set.
        out: destination folder.
        images: ``(labelled image, bytes, extension)``; the label is the class folder.
    """
    base, out = Path(base), Path(out)
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(base, out)
    num_base = sum(1 for p in out.rglob("*") if p.is_file())
    for item, data, extension in images:
        folder = out / item.label
        folder.mkdir(exist_ok=True)
        (folder / imported_name(item.sha256, extension)).write_bytes(data)
    counts = Counter(p.parent.name for p in out.glob("*/*") if p.is_file())
    log.info("Merged %d new images into %d base files at %s", len(images), num_base, out)
    return MergeResult(num_base=num_base, num_added=len(images), class_counts=dict(sorted(counts.items())))
