"""Index a class-per-folder image data set, check every file, and summarise it.

Layout: ``<root>/<ClassName>/<image>``. Files with an image extension that do not decode
are skipped and counted with their reason; files without an image extension, and files in
folders nested inside a class folder, are counted as skipped too. Nothing is dropped
without a record in the returned :class:`DatasetIndex`.
"""

from __future__ import annotations

import functools
import logging
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from planets_mlops.errors import DataError

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
IGNORED_NAMES = {".DS_Store", "Thumbs.db", ".gitignore", ".gitkeep"}


@dataclass
class DatasetIndex:
    """The valid images of a data set, in a fixed order, and what was skipped and why."""

    root: Path
    classes: list[str]
    files: list[Path] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def class_counts(self) -> dict[str, int]:
        """Class name -> number of valid images, in class order (0 for a class with none)."""
        counts = Counter(self.labels)
        return {name: counts.get(i, 0) for i, name in enumerate(self.classes)}

    def skipped_summary(self) -> dict[str, int]:
        """Skip reason (the text before its first ``:``) -> number of files skipped for it.

        For example ``{"undecodable": 2, "not an image file": 1}``.
        """
        return dict(Counter(reason.split(":")[0] for _, reason in self.skipped))


def list_classes(root: Path) -> list[str]:
    """Class names: the sorted names of the sub-folders of ``root``.

    Args:
        root: Folder of class sub-folders; hidden folders are ignored.

    Returns:
        The class names, sorted.

    Raises:
        DataError: ``root`` is not a folder, or has no class sub-folder.
    """
    if not root.is_dir():
        raise DataError(
            f"Data set folder {str(root)!r} does not exist or is not a folder. "
            "Check data_path: it must name a folder of class sub-folders."
        )
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(
            f"Data set folder {str(root)!r} has no class sub-folders. "
            "Expected <data_path>/<ClassName>/<image>.jpg."
        )
    return classes


def check_image(path: Path, keep: Callable[[np.ndarray], None] | None = None) -> str | None:
    """Return why ``path`` is not a usable image, or None when it decodes fully.

    The project's one decoder decides (:func:`planets_mlops.imaging.check_image`: its
    formats, size limits and complete pixel data), as for the import and for serving.

    Args:
        path: Image file to decode completely.
        keep: Called with the decoded RGB pixels of a good image.

    Returns:
        ``"undecodable: <the decoder's reason>"``, or None for a good image.
    """
    from planets_mlops.imaging import check_image as decoder_check

    reason = decoder_check(path, keep=keep)
    return None if reason is None else f"undecodable: {reason}"


def _kept_as(
    keep: Callable[[Path, np.ndarray], None] | None, path: Path
) -> Callable[[np.ndarray], None] | None:
    return None if keep is None else functools.partial(keep, path)


NESTED = "in a nested folder"


def _nested_files(root: Path, folder: Path) -> list[tuple[str, str]]:
    """Every file below ``folder`` (a folder inside a class folder), each with its reason.

    The layout is ``<class>/<image>``: files deeper down are not taken (a sub-folder might
    be another class, or a copy), but each is counted. Links to folders are not followed.
    """
    if folder.is_symlink():
        return [(str(folder.relative_to(root)), f"{NESTED}: a link to a folder, not followed")]
    found = []
    for current, dirs, names in os.walk(folder, followlinks=False):
        dirs.sort()
        for file_name in sorted(names):
            if file_name in IGNORED_NAMES:
                continue
            relative = str((Path(current) / file_name).relative_to(root))
            found.append(
                (
                    relative,
                    f"{NESTED}: {str(Path(relative).parent)!r}; move the image directly into its "
                    "class folder (<data_path>/<ClassName>/<image>) to use it",
                )
            )
    return found


def index_dataset(
    root: Path,
    expected_classes: int | None = None,
    verify: bool = True,
    keep: Callable[[Path, np.ndarray], None] | None = None,
) -> DatasetIndex:
    """List and check every image under ``root``.

    Files are ordered class by class (classes sorted), then by file name, the same order
    as Keras' ``image_dataset_from_directory``, so a seeded split selects the same files.

    Args:
        root: folder of class sub-folders.
        expected_classes: fail unless exactly this many classes are found (None: any).
        verify: decode every image and skip (and count) the ones that fail.
        keep: With ``verify``, called with each good image's path and its decoded RGB
            pixels (``prepare_dataset`` preprocesses them then instead of decoding again).

    Raises:
        DataError: missing folder, no classes, a class with no valid image, or a class
            count that differs from ``expected_classes``.
    """
    root = Path(root)
    classes = list_classes(root)
    if expected_classes is not None and len(classes) != expected_classes:
        raise DataError(
            f"Data set {str(root)!r} has {len(classes)} classes {classes}, but "
            f"{expected_classes} were expected. Fix the output_classes parameter or the data."
        )
    index = DatasetIndex(root=root, classes=classes)
    for label, name in enumerate(classes):
        kept = 0
        for path in sorted((root / name).iterdir()):
            if path.name in IGNORED_NAMES:
                continue
            if path.is_dir():
                index.skipped.extend(_nested_files(root, path))
                continue
            relative = str(path.relative_to(root))
            if path.suffix.lower() not in IMAGE_EXTENSIONS:
                index.skipped.append((relative, f"not an image file: extension {path.suffix!r}"))
                continue
            if verify and (reason := check_image(path, _kept_as(keep, path))) is not None:
                index.skipped.append((relative, reason))
                continue
            index.files.append(path)
            index.labels.append(label)
            kept += 1
        if kept == 0:
            raise DataError(
                f"Class folder {str(root / name)!r} has no valid image. Add images "
                f"({', '.join(IMAGE_EXTENSIONS)}) or remove the empty folder."
            )
    for relative, reason in index.skipped:
        log.warning("Skipped %s (%s)", relative, reason)
    log.info(
        "Indexed %d images in %d classes under %s; skipped %d",
        len(index.files),
        len(classes),
        root,
        len(index.skipped),
    )
    return index
