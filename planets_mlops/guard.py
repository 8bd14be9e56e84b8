"""Open-set guard: how well does the model know this image? NumPy only.

A classifier always answers one of its classes, even for an image of something it has never
seen. The guard scores an image by how close the model's own penultimate-layer embedding
lies to the embeddings of the training images, and calls the image *recognised* when that
score reaches a threshold calibrated on validation images (images the guard was not fitted
on) to keep a stated share of known images, the *coverage* (95 % by default).

Score (``metric = "cosine-knn"``): the mean cosine similarity between the image's
embedding and its ``k`` nearest training embeddings. Embeddings after a ReLU are
non-negative, so scores lie in [0, 1]; higher means better known. An all-zero embedding
(the network saw nothing it responds to) scores 0.

API, for everything that scores images (training, evaluation, serving, the promotion gate,
the labelling loop):

- :func:`normalize` -- unit-length rows (all-zero rows stay zero).
- :func:`knn_scores` -- ``(bank, embeddings, k) -> scores``, the score above.
- :func:`calibrate_threshold` -- ``(known scores, coverage) -> threshold``.
- :class:`Guard` -- bank + threshold: :meth:`Guard.fit`, :meth:`Guard.scores`,
  :meth:`Guard.recognised`, :meth:`Guard.save`, :func:`load_guard`.
- :func:`rejection_rate` -- the share of (unseen) scores below the threshold.

Saved format, in the model folder (and so in the bento's model):

- ``guard.json``: ``{"format": "planets-guard/1", "metric": "cosine-knn", "k", "threshold",
  "coverage", "embedding_dim", "bank_size", "embedding_output", "calibration": {"count",
  "kept"}}``; ``embedding_output`` names the ONNX output that gives the embedding.
- ``guard_bank.npy``: float32 ``(bank_size, embedding_dim)``, unit-length training
  embeddings (loaded with ``allow_pickle=False``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from planets_mlops.errors import DataError, InvalidParameterError

FORMAT = "planets-guard/1"
METRIC = "cosine-knn"
GUARD_FILE = "guard.json"
BANK_FILE = "guard_bank.npy"
EMBEDDING_OUTPUT = "embedding"

# Scores are computed in blocks of this many rows: a (block, bank) similarity matrix of
# float32 stays a few MB whatever the number of images scored at once.
_BLOCK = 512


def check_coverage(coverage: float, name: str = "coverage") -> float:
    """``coverage`` as a float in (0, 1], or a clear error."""
    if isinstance(coverage, bool) or not isinstance(coverage, (int, float)) or not 0.0 < coverage <= 1.0:
        raise InvalidParameterError(
            name,
            coverage,
            "a fraction in (0, 1]",
            "It is the share of known images the guard keeps; 0.95 keeps 95 %.",
        )
    return float(coverage)


def _as_matrix(embeddings: Any, name: str) -> np.ndarray:
    array = np.asarray(embeddings, dtype=np.float32)
    if array.ndim != 2 or array.shape[1] == 0:
        raise DataError(f"{name} must be a 2-D array (images, embedding size); got shape {array.shape}.")
    if not np.all(np.isfinite(array)):
        raise DataError(f"{name} holds NaN or infinite values; the model's embedding is broken.")
    return array


def normalize(embeddings: Any) -> np.ndarray:
    """Rows scaled to unit length (float32); all-zero rows stay zero."""
    array = _as_matrix(embeddings, "embeddings")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return np.divide(array, norms, out=np.zeros_like(array), where=norms > 0)


def knn_scores(bank: np.ndarray, embeddings: Any, k: int = 1) -> np.ndarray:
    """Mean cosine similarity of each embedding to its ``k`` nearest rows of ``bank``.

    Args:
        bank: unit-length reference embeddings ``(m, d)`` (see :func:`normalize`).
        embeddings: raw embeddings ``(n, d)``; normalised here.
        k: neighbours averaged, ``1 <= k <= m``.

    Returns:
        float64 ``(n,)`` scores; higher is better known.

    Raises:
        InvalidParameterError: bad ``k``.
        DataError: shapes that do not match, or non-finite values.
    """
    bank = _as_matrix(bank, "bank")
    queries = normalize(embeddings)
    if queries.shape[1] != bank.shape[1]:
        raise DataError(
            f"Embeddings have {queries.shape[1]} dimensions but the guard's bank has {bank.shape[1]}; "
            "the guard belongs to another model."
        )
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(bank):
        raise InvalidParameterError("k", k, f"an integer in [1, {len(bank)}] (the bank size)")
    scores = np.empty(len(queries), np.float64)
    for start in range(0, len(queries), _BLOCK):
        similarity = queries[start : start + _BLOCK] @ bank.T
        if k == 1:
            nearest = similarity.max(axis=1, keepdims=True)
        else:
            nearest = np.partition(similarity, len(bank) - k, axis=1)[:, len(bank) - k :]
        scores[start : start + _BLOCK] = nearest.astype(np.float64).mean(axis=1)
    # Rounding can push a unit dot product a hair past 1.
    return np.clip(scores, -1.0, 1.0)


def calibrate_threshold(known_scores: Any, coverage: float) -> float:
    """The highest threshold that keeps at least ``coverage`` of ``known_scores``.

    An image is recognised when its score is ``>= threshold``. With ``n`` scores, the
    ``floor((1 - coverage) * n)`` lowest are rejected, so the kept share is at least
    ``coverage`` (more when scores tie at the threshold).

    Raises:
        InvalidParameterError: ``coverage`` outside (0, 1].
        DataError: no scores, or non-finite ones.
    """
    coverage = check_coverage(coverage)
    scores = np.sort(np.asarray(known_scores, dtype=np.float64).ravel())
    if scores.size == 0:
        raise DataError("No known-image scores to calibrate the guard on: the validation split is empty.")
    if not np.all(np.isfinite(scores)):
        raise DataError("Known-image scores hold NaN or infinite values; cannot calibrate the guard.")
    rejected = math.floor((1.0 - coverage) * scores.size + 1e-9)
    return float(scores[min(rejected, scores.size - 1)])


def rejection_rate(scores: Any, threshold: float) -> float:
    """Share of ``scores`` below ``threshold`` (rejected as unknown)."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if scores.size == 0:
        raise DataError("No scores given: cannot compute a rejection rate of nothing.")
    return float(np.mean(scores < threshold))


@dataclass(frozen=True)
class Guard:
    """A fitted guard: the training embeddings (unit rows) and the calibrated threshold."""

    bank: np.ndarray
    threshold: float
    coverage: float
    k: int = 1
    calibration: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def fit(
        cls, train_embeddings: Any, validation_embeddings: Any, coverage: float = 0.95, k: int = 1
    ) -> Guard:
        """Bank the training embeddings; set the threshold on the validation ones.

        The validation images must not be in the bank: their scores stand for those of
        new images of known classes.
        """
        coverage = check_coverage(coverage)
        bank = normalize(train_embeddings)
        if not np.any(np.linalg.norm(bank, axis=1) > 0):
            raise DataError("Every training embedding is zero: the model has learnt nothing to compare with.")
        scores = knn_scores(bank, validation_embeddings, k)
        threshold = calibrate_threshold(scores, coverage)
        kept = float(np.mean(scores >= threshold))
        return cls(bank, threshold, coverage, k, {"count": int(scores.size), "kept": kept})

    def scores(self, embeddings: Any) -> np.ndarray:
        """How known each image is (see :func:`knn_scores`)."""
        return knn_scores(self.bank, embeddings, self.k)

    def recognised(self, scores: Any) -> np.ndarray:
        """Boolean mask: the score reaches the threshold."""
        return np.asarray(scores, dtype=np.float64) >= self.threshold

    def describe(self) -> dict[str, Any]:
        """The ``guard.json`` document."""
        return {
            "format": FORMAT,
            "metric": METRIC,
            "k": self.k,
            "threshold": self.threshold,
            "coverage": self.coverage,
            "embedding_dim": int(self.bank.shape[1]),
            "bank_size": int(self.bank.shape[0]),
            "embedding_output": EMBEDDING_OUTPUT,
            "calibration": self.calibration,
        }

    def save(self, folder: Path) -> None:
        """Write ``guard.json`` and ``guard_bank.npy`` into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / BANK_FILE, self.bank.astype(np.float32))
        (folder / GUARD_FILE).write_text(json.dumps(self.describe(), indent=1))


def has_guard(folder: Path) -> bool:
    """Whether ``folder`` (a model folder) holds a guard."""
    return (Path(folder) / GUARD_FILE).is_file()


def load_guard(folder: Path) -> Guard:
    """Read the guard saved by :meth:`Guard.save`.

    Raises:
        DataError: missing or malformed files, or a format this code does not read.
    """
    folder = Path(folder)
    path = folder / GUARD_FILE
    try:
        doc = json.loads(path.read_text())
        bank = np.load(folder / BANK_FILE, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(
            f"Cannot read the guard in {str(folder)!r}: {exc}. Retrain the model to write "
            f"{GUARD_FILE} and {BANK_FILE}."
        ) from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("metric") != METRIC:
        raise DataError(
            f"{str(path)!r} is not a {FORMAT} guard with metric {METRIC!r} "
            f"(format {doc.get('format') if isinstance(doc, dict) else None!r}). Retrain the model."
        )
    bank = _as_matrix(bank, str(folder / BANK_FILE))
    try:
        shape = (int(doc["bank_size"]), int(doc["embedding_dim"]))
        guard = Guard(bank, float(doc["threshold"]), check_coverage(doc["coverage"]), int(doc["k"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{str(path)!r} is malformed ({exc!r}). Retrain the model to rewrite it.") from exc
    if bank.shape != shape or not 1 <= guard.k <= len(bank):
        raise DataError(
            f"{BANK_FILE} has shape {bank.shape} but {GUARD_FILE} says {shape} with k={guard.k}: "
            "the guard files do not belong together. Retrain the model to rewrite them."
        )
    return Guard(bank, guard.threshold, guard.coverage, guard.k, doc.get("calibration", {}))
