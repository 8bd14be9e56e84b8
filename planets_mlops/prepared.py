"""The prepared data set: its layout and its readers.

``prepare_dataset`` (:mod:`planets_mlops.prepare`) writes it; training and evaluation read it
through this module, so that no step imports another.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from planets_mlops.errors import DataError, InvalidParameterError
from planets_mlops.preprocess import PreprocessConfig, preprocess_image

SPLITS = ("train", "validation")


MANIFEST = "manifest.json"


# The validation images are also kept as they were, under validation/raw/<relative path>.
RAW_SPLITS = ("validation",)


RAW_FOLDER = "raw"


def load_raw_split(prepared_dir: Path, split: str, config: PreprocessConfig) -> tuple[np.ndarray, np.ndarray]:
    """The raw images of ``split`` preprocessed with ``config``, and their labels.

    Scores a model whose preprocessing differs from the data set's (another image size or
    colour mode) on the same images as the data set's own tensors, in the same order.

    Args:
        prepared_dir: A folder written by :func:`prepare_dataset`.
        split: A split whose raw images were kept (``validation``).
        config: The other model's preprocessing.

    Returns:
        Model inputs of shape ``(n, *config.input_shape)`` and the labels.

    Raises:
        DataError: the data set kept no raw images of ``split`` (prepared by an older
            version), or one is missing.
    """
    manifest = load_manifest(prepared_dir)
    entry = manifest["splits"].get(split, {})
    if "raw" not in entry:
        raise DataError(
            f"The prepared data set {str(prepared_dir)!r} keeps no raw {split} images, so a model "
            "with other preprocessing cannot be scored on them. Prepare the data set again with "
            "this version of prepare_dataset."
        )
    folder = Path(prepared_dir) / entry["raw"]
    images = []
    for name in entry["files"]:
        path = folder / name
        if not path.is_file() or not path.resolve().is_relative_to(folder.resolve()):
            raise DataError(f"{str(path)!r} is missing from the prepared data set: prepare it again.")
        images.append(preprocess_image(path, config))
    labels = np.concatenate([labels for _, labels in iter_shards(prepared_dir, split)])
    empty = np.zeros((0, *config.input_shape), np.float32)
    return (np.stack(images).astype(np.float32) if images else empty), labels


def load_manifest(prepared_dir: Path) -> dict:
    """The manifest of a prepared data set.

    Args:
        prepared_dir: A folder written by :func:`prepare_dataset`.

    Returns:
        The parsed ``manifest.json``.

    Raises:
        DataError: the folder has no manifest.
    """
    path = Path(prepared_dir) / MANIFEST
    if not path.is_file():
        raise DataError(
            f"{str(path)!r} not found: {str(prepared_dir)!r} is not a prepared data set. "
            "Pass the output of prepare_dataset."
        )
    return json.loads(path.read_text())


def iter_shards(prepared_dir: Path, split: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (images, labels) one memory-mapped shard at a time."""
    manifest = load_manifest(prepared_dir)
    if split not in manifest["splits"]:
        raise InvalidParameterError("split", split, f"one of {sorted(manifest['splits'])}")
    folder = Path(prepared_dir) / split
    for name in manifest["splits"][split]["shards"]:
        yield (
            np.load(folder / f"images-{name}.npy", mmap_mode="r"),
            np.load(folder / f"labels-{name}.npy"),
        )


def load_split(prepared_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The whole split in memory (for evaluation of small splits)."""
    parts = list(iter_shards(prepared_dir, split))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
