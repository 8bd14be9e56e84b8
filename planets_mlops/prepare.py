"""Deterministic split and preprocessing into a streamable, sharded data set.

Output folder layout::

    manifest.json            classes, preprocessing, splits, shard names, source files
    train/images-00000.npy   float32 (n, size, size, channels), memory-mappable
    train/labels-00000.npy   int32 (n,)
    validation/...
    validation/raw/<Class>/<file>   the validation images as they were (raw bytes)
    preview.png              a few training samples with their labels

The raw validation images let the gate score a model with other preprocessing (another
image size or colour mode) on the very same images (:func:`load_raw_split`).

Shards are plain ``.npy`` files read with ``mmap_mode="r"``: a reader streams one shard
at a time and never holds the whole data set in memory.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from planets_mlops.dataset import DatasetIndex, index_dataset
from planets_mlops.errors import DataError, InvalidParameterError
from planets_mlops.knobs import PrepareParams
from planets_mlops.prepared import (
    MANIFEST,
    RAW_FOLDER,
    RAW_SPLITS,
    SPLITS,
    iter_shards,
)
from planets_mlops.preprocess import PreprocessConfig, model_input, preprocess_image

log = logging.getLogger(__name__)

PREVIEW = "preview.png"


@dataclass(frozen=True)
class PrepareResult:
    """A prepared data set: its manifest and the folder it was written to.

    Attributes:
        manifest: The manifest written to ``out_dir/manifest.json`` (classes,
            preprocessing, splits with their files and shards, skipped files).
        out_dir: The prepared data set folder.
    """

    manifest: dict[str, Any]
    out_dir: Path

    @property
    def classes(self) -> list[str]:
        """Class names; the index is the label."""
        return list(self.manifest["classes"])

    def count(self, split: str) -> int:
        """Number of images in ``split`` (``train`` or ``validation``)."""
        return int(self.manifest["splits"][split]["count"])

    def metadata(self, source: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Metadata of the prepared Dataset artifact.

        Args:
            source: Metadata of the raw data set artifact (from ``pull_data`` or
                ``import_labels``); its ``commit`` and ``dvc_hash`` (empty for labels not
                published as a DVC version) and ``base_commit`` are recorded as the data's
                provenance, next to the content hash of the files really used.

        Returns:
            Classes, preprocessing, split sizes, skipped count, split method, provenance.
        """
        source = source or {}
        return {
            "classes": self.manifest["classes"],
            "preprocess": self.manifest["preprocess"],
            "train_count": self.count("train"),
            "validation_count": self.count("validation"),
            "skipped": len(self.manifest["skipped"]),
            "split_method": self.manifest["split_method"],
            "source_commit": source.get("commit", ""),
            "source_dvc_hash": source.get("dvc_hash", ""),
            "source_base_commit": source.get("base_commit", source.get("commit", "")),
            "data_content_hash": self.manifest.get("content_hash", ""),
        }

    def preview_html(self) -> str:
        """An HTML page: every class with its image count per split, and sample images of each."""
        picture = base64.b64encode((Path(self.out_dir) / PREVIEW).read_bytes()).decode()
        counts = class_split_counts(self.manifest)
        rows = "".join(
            f"<tr><td>{html.escape(name)}</td>"
            + "".join(f"<td class='num'>{counts[name][split]}</td>" for split in ("train", "validation"))
            + f"<td class='num'>{counts[name]['train'] + counts[name]['validation']}</td></tr>"
            for name in self.classes
        )
        train, validation = self.count("train"), self.count("validation")
        rows += (
            f"<tr><th>all {len(self.classes)} classes</th><th class='num'>{train}</th>"
            f"<th class='num'>{validation}</th><th class='num'>{train + validation}</th></tr>"
        )
        skipped = len(self.manifest["skipped"])
        preprocess = self.manifest["preprocess"]
        size = preprocess.get("image_size")
        colour = "grayscale" if preprocess.get("grayscale") else "colour"
        return (
            "<!doctype html><html><head><meta charset='utf-8'><title>Prepared data</title><style>"
            "body{font-family:-apple-system,'Segoe UI','Noto Sans',Helvetica,Arial,sans-serif;font-size:15px;"
            "color:#1f2328;margin:1.2em;max-width:1100px}table{border-collapse:collapse;margin:.4em 0 1em}"
            "th,td{border:1px solid #d1d9e0;padding:3px 10px;text-align:left}th{background:#f6f8fa}"
            ".num{text-align:right;font-variant-numeric:tabular-nums}img{max-width:100%;height:auto}"
            "</style></head><body>"
            f"<h1>Prepared data: {len(self.classes)} classes, {train + validation} images</h1>"
            f"<p>Split {train} train / {validation} validation ({self.manifest['split_method']}, seed "
            f"{self.manifest.get('seed')}); images {size} px, {colour}; {skipped} file(s) skipped.</p>"
            "<table><tr><th>class</th><th>train</th><th>validation</th><th>images</th></tr>"
            f"{rows}</table><h2>Samples of every class</h2>"
            f"<img alt='samples of every class' src='data:image/png;base64,{picture}'/></body></html>"
        )


def content_hash(index: DatasetIndex) -> str:
    """SHA-256 of what is trained on: every used file's class, name and bytes, in order.

    A data set changed without a new DVC version (labels imported but not published) has
    the base commit's provenance; this hash still tells the two apart.

    Args:
        index: The checked data set (its skipped files do not count).

    Returns:
        ``sha256:<hex>``.
    """
    digest = hashlib.sha256()
    for path, label in zip(index.files, index.labels):
        relative = str(path.relative_to(index.root))
        digest.update(f"{index.classes[label]}\t{relative}\t".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return f"sha256:{digest.hexdigest()}"


def split_indices(
    num_samples: int, split: float, seed: int, allow_empty: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train/validation split, the same as Keras' ``image_dataset_from_directory``.

    Keras shuffles the file list with ``np.random.RandomState(seed)`` and keeps the last
    ``int(split * n)`` files for validation; doing the same selects the same files.
    ``allow_empty`` accepts a side with no file (a handful of newly added images).
    """
    order = np.arange(num_samples)
    np.random.RandomState(seed).shuffle(order)
    num_val = int(split * num_samples)
    if num_val == 0 and allow_empty:
        return order, order[:0]
    if num_val == 0 or num_val == num_samples:
        raise InvalidParameterError(
            "split",
            split,
            f"a fraction that leaves images on both sides of {num_samples} images",
            "Use more images or a split closer to 0.5.",
        )
    return order[:-num_val], order[-num_val:]


KEPT_TENSOR_BYTES = 256 * 2**20
"""Model input tensors the index's verification keeps for the shards (:class:`_DecodedOnce`):
at most this many bytes (21,000 colour images of 32x32); the shards decode any other image again."""


class _DecodedOnce:
    """The model input of each image the index's verification decoded, so the shards need not decode it again.

    Verification decodes every file as RGB (:func:`planets_mlops.imaging.check_image`); for a
    colour data set that is the decode :func:`preprocess_image` does, so its tensor
    (:func:`planets_mlops.preprocess.model_input`) is the one the shards would compute, to the bit. Grayscale
    data sets decode luma for the shards: nothing is kept. At most :data:`KEPT_TENSOR_BYTES`.
    """

    def __init__(self, config: PreprocessConfig) -> None:
        self.config = config
        self.tensors: dict[Path, np.ndarray] = {}
        self.left = KEPT_TENSOR_BYTES

    def keep(self, path: Path, pixels: np.ndarray) -> None:
        """Keep ``pixels``' model input tensor (the index's ``keep``)."""
        if self.config.grayscale:
            return
        tensor = model_input(pixels, self.config)
        if tensor.nbytes <= self.left:
            self.tensors[path] = tensor
            self.left -= tensor.nbytes

    def tensor(self, path: Path) -> np.ndarray:
        """The model input of ``path``: the one kept (once), or :func:`preprocess_image`'s."""
        kept = self.tensors.pop(path, None)
        return kept if kept is not None else preprocess_image(path, self.config)


def _write_split(
    files: list[Path], labels: list[int], out: Path, decoded: _DecodedOnce, shard_size: int
) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    shards = []
    for number, start in enumerate(range(0, len(files), shard_size)):
        chunk = files[start : start + shard_size]
        images = np.stack([decoded.tensor(path) for path in chunk]).astype(np.float32)
        name = f"{number:05d}"
        np.save(out / f"images-{name}.npy", images)
        np.save(out / f"labels-{name}.npy", np.asarray(labels[start : start + shard_size], np.int32))
        shards.append(name)
    return shards


def stable_split(
    files: list[str], base_files: list[str], split: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``files`` so that the files of ``base_files`` keep the split they had there.

    A model trained on the base data set never saw its validation files; splitting the
    base files exactly as before, and the added files on their own, keeps it that way, so
    that model and one trained on the grown data set are compared on unseen images only.
    """
    position = {name: i for i, name in enumerate(files)}
    missing = [name for name in base_files if name not in position]
    if missing:
        raise DataError(
            f"{len(missing)} files of the base data set are not in the data set to split "
            f"(e.g. {missing[:3]}). The base must be the data set the new one was grown from."
        )
    base_train, base_val = split_indices(len(base_files), split, seed)
    base = set(base_files)
    added = [name for name in files if name not in base]
    new_train, new_val = (
        split_indices(len(added), split, seed, allow_empty=True) if added else (np.zeros(0, np.int64),) * 2
    )
    train = [position[base_files[i]] for i in base_train] + [position[added[i]] for i in new_train]
    val = [position[base_files[i]] for i in base_val] + [position[added[i]] for i in new_val]
    # Training reads files in split order through a local shuffle buffer: mix the added
    # files in, or every epoch would end with batches of new images only.
    mixed = np.asarray(train, np.int64)[np.random.RandomState(seed).permutation(len(train))]
    return mixed, np.asarray(val, np.int64)


def _check_invalid(index: DatasetIndex, max_invalid_fraction: float) -> None:
    """Refuse a data set with more unusable files than ``max_invalid_fraction`` allows."""
    total = len(index.files) + len(index.skipped)
    if len(index.skipped) > max_invalid_fraction * total:
        listing = "; ".join(f"{name} ({reason})" for name, reason in index.skipped[:10])
        raise DataError(
            f"{len(index.skipped)} of {total} files in the data set are not usable images, more "
            f"than max_invalid_fraction={max_invalid_fraction}: {listing}. Remove or "
            "replace them in the data repository, or raise max_invalid_fraction."
        )


def _split(
    index: DatasetIndex, params: PrepareParams, base_dir: Path | None
) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation indices into ``index.files`` (stable over ``base_dir`` when given)."""
    if base_dir is None:
        return split_indices(len(index.files), params.split, params.seed)
    relative = [str(path.relative_to(index.root)) for path in index.files]
    base = index_dataset(Path(base_dir), verify=False)
    skipped = {name for name, _ in index.skipped}  # counted in the manifest already
    base_files = [
        name for name in (str(path.relative_to(base.root)) for path in base.files) if name not in skipped
    ]
    return stable_split(relative, base_files, params.split, params.seed)


def prepare_dataset(
    raw_dir: Path, out_dir: Path, params: PrepareParams, base_dir: Path | None = None
) -> PrepareResult:
    """Index, check, split and preprocess ``raw_dir`` into ``out_dir``.

    Args:
        raw_dir: A class-per-folder image data set (the output of ``pull_data``).
        out_dir: Where the manifest, the shards and the preview go.
        params: Split, preprocessing and data checks.
        base_dir: The data set ``raw_dir`` was grown from (e.g. before new labels were
            merged); its files keep their split (see :func:`stable_split`).

    Returns:
        The manifest (also written to ``out_dir/manifest.json``) and the output folder.

    Raises:
        DataError: bad data set, or more invalid files than ``max_invalid_fraction`` allows.
    """
    started = time.monotonic()
    config = params.preprocess_config()
    decoded = _DecodedOnce(config)
    index = index_dataset(
        Path(raw_dir), expected_classes=params.output_classes or None, verify=True, keep=decoded.keep
    )
    _check_invalid(index, params.max_invalid_fraction)
    train_idx, val_idx = _split(index, params, base_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest: dict = {
        "format": "planets-shards/1",
        "classes": index.classes,
        "preprocess": config.to_dict(),
        "input_shape": list(config.input_shape),
        "seed": params.seed,
        "split": params.split,
        "skipped": [{"file": name, "reason": reason} for name, reason in index.skipped],
        "split_method": "seeded-shuffle" if base_dir is None else "stable-over-base",
        "splits": {},
    }
    for split_name, chosen in zip(SPLITS, (train_idx, val_idx)):
        files = [index.files[i] for i in chosen]
        labels = [index.labels[i] for i in chosen]
        shards = _write_split(files, labels, out_dir / split_name, decoded, params.shard_size)
        counts = np.bincount(np.asarray(labels), minlength=len(index.classes))
        relative = [str(path.relative_to(index.root)) for path in files]
        manifest["splits"][split_name] = {
            "count": len(files),
            "shards": shards,
            "files": relative,
            "class_counts": dict(zip(index.classes, counts.tolist())),
        }
        if split_name in RAW_SPLITS:
            _copy_raw(files, relative, out_dir / split_name / RAW_FOLDER)
            manifest["splits"][split_name]["raw"] = f"{split_name}/{RAW_FOLDER}"
    manifest["content_hash"] = content_hash(index)
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=1))
    save_preview(out_dir, manifest)
    log.info(
        "Prepared %d train + %d validation images (%d classes, %dx%d, %s) in %.1f s; skipped %d",
        len(train_idx),
        len(val_idx),
        len(index.classes),
        config.image_size,
        config.image_size,
        "grayscale" if config.grayscale else "rgb",
        time.monotonic() - started,
        len(index.skipped),
    )
    return PrepareResult(manifest=manifest, out_dir=out_dir)


def _copy_raw(files: list[Path], relative: list[str], folder: Path) -> None:
    """Copy ``files`` to ``folder/<relative>`` (their bytes as they are)."""
    for path, name in zip(files, relative):
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())


def class_split_counts(manifest: dict) -> dict[str, dict[str, int]]:
    """Images of each class in each split: ``{class: {"train": n, "validation": m}}``."""
    counts = {name: {"train": 0, "validation": 0} for name in manifest["classes"]}
    for split in ("train", "validation"):
        for name in manifest["splits"][split].get("files", []):
            label = str(name).split("/", 1)[0]
            if label in counts:
                counts[label][split] += 1
    return counts


def save_preview(prepared_dir: Path, manifest: dict, per_class: int = 5) -> Path:
    """Every class in one row: its name and counts, then its first training samples, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = manifest["classes"]
    samples: dict[int, list[np.ndarray]] = {i: [] for i in range(len(classes))}
    for images, labels in iter_shards(prepared_dir, "train"):
        for image, label in zip(images, labels, strict=True):
            if len(samples[int(label)]) < per_class:
                samples[int(label)].append(image)
        if all(len(v) >= per_class for v in samples.values()):
            break
    counts = class_split_counts(manifest)
    # One picture of all the samples (a mosaic, white between the images) on one Axes, the
    # class names beside it: the figure of a grid of Axes, but one Axes instead of 60 for
    # ten classes, which cost Matplotlib most of this step's second.
    rows, side = len(classes), int(manifest["input_shape"][0])
    gap = max(1, side // 8)
    cell = side + gap
    mosaic = np.ones((rows * cell, per_class * cell, 3))
    for row in range(rows):
        for column, image in enumerate(samples[row][:per_class]):
            picture = np.asarray(image, np.float64)
            if picture.shape[-1] == 1:  # as imshow shows one channel: grey from 0 to its maximum
                picture = np.repeat(picture / (float(np.max(picture)) or 1.0), 3, axis=-1)
            top, left = row * cell + gap // 2, column * cell + gap // 2
            mosaic[top : top + side, left : left + side] = np.clip(picture, 0.0, 1.0)
    columns = per_class + 1
    fig = plt.figure(figsize=(1.9 * columns, 1.9 * rows))
    ax = fig.add_axes((1.0 / columns, 0.0, 1.0 - 1.0 / columns, 1.0))
    ax.imshow(mosaic, aspect="auto", interpolation="nearest")
    ax.axis("off")
    for row, name in enumerate(classes):
        fig.text(
            0.01,
            1.0 - (row + 0.5) / rows,
            f"{name}\n{counts[name]['train']} train\n{counts[name]['validation']} validation",
            fontsize=12,
            va="center",
            ha="left",
        )
    path = Path(prepared_dir) / PREVIEW
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
