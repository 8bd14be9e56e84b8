"""Open-set guard: how well does the model know this image? NumPy only.

A classifier always answers one of its classes, even for an image of something it has never
seen. The guard compares the model's own penultimate-layer embedding of an image with the
embeddings of the training images (the *bank*), and calls the image *recognised* when it
lies close enough to them.

How close is close enough depends on the class: some classes' renders are near-duplicates
of each other, others vary. So each class has its own threshold, calibrated on validation
images (images not in the bank) *and* on the same images under benign changes of the
camera (noise, blur, lower contrast, another exposure: :data:`planets_mlops.augment.BENIGN`)
that the model still classifies right: a slightly noisier photograph of Mars is still Mars,
and the guard must keep it. The bank holds the training images as they are and once more
under random benign changes, so a changed image of a known class finds a close neighbour.

Score (``metric = "cosine-euclidean-knn-classwise"``): two distances to the bank, each in
units of its class's calibrated distance, and the larger of the two:

- the cosine distance ``1 - s``, with ``s`` the mean cosine similarity between the image's
  embedding and its ``k`` nearest bank rows, ``c`` the class of the nearest row and ``t_c``
  that class's calibrated similarity: ``u = (1 - s) / (1 - t_c)``;
- the Euclidean distance ``e`` to its ``k`` nearest bank rows (mean), ``c'`` the class of
  the nearest, ``d_c'`` that class's calibrated distance: ``v = e / d_c'``;
- ``r = max(u, v) / m_c``, with ``m_c`` the joint threshold of class ``c``, calibrated on
  ``max(u, v)`` so that the class still keeps ``coverage`` of its calibration images.

The *known score* is ``clip(1 - r / 2, 0, 1)``: 1 for an image identical to a training
image, :data:`THRESHOLD` (0.5) at the class's threshold, 0 at twice that or more. An image
is recognised when its score is ``>= 0.5``; one threshold for every consumer, the
class-wise calibration inside the score. An all-zero embedding (the network saw nothing it
responds to) scores 0.

With image statistics (``metric = "cosine-euclidean-image-knn-classwise"``, the default
since ``planets-guard/4``), a third distance joins the two:

- ``w = f / i_c``: ``f`` the Euclidean distance from the image's statistics
  (:func:`planets_mlops.imagestats.image_statistics` of the model input, each statistic in
  units of its spread within class ``c``'s bank rows) to the nearest bank image *of class
  c*, ``i_c`` that class's calibrated distance; and ``r = max(u, v, w) / m_c``.

``i_c`` and ``m_c`` are calibrated on class ``c``'s own calibration images (their labels
are known: they are classified right). On the images whose nearest embedding is of class
``c`` instead, a few images of another class (3 of 1,328 in a leave-Mercury-out model) would
stretch the Moon's thresholds until Mercury passed.

Why three distances: the cosine compares the direction of an embedding, the Euclidean also
its length. Leaving one class out of training (``benchmarks/bench_guard.py``), images of
the unseen Neptune point the way Earth's do, and only their length tells them apart: the
cosine guard kept all 200 of them, the two together rejected all 200, and kept the same
share of known and benign-changed images. Without Mercury, the model gives Mercury's images
the Moon's embedding, direction and length: both distances kept all 200 of them. The
statistics of the image itself (a neutral grey disc where the Moon's is warmer) are what
tell them apart (:mod:`planets_mlops.imagestats`), so ``w`` is measured to the class the
embedding points to.

API, for everything that scores images (training, evaluation, serving, the promotion gate,
the labelling loop):

- :func:`normalize` -- unit-length rows (all-zero rows stay zero).
- :func:`knn_scores` -- ``(bank, embeddings, k) -> scores``, the similarity ``s`` above.
- :func:`calibrate_threshold` -- ``(known scores, coverage) -> threshold``.
- :class:`Guard` -- bank, its classes and their thresholds: :meth:`Guard.fit`,
  :meth:`Guard.scores`, :meth:`Guard.recognised`, :meth:`Guard.save`, :func:`load_guard`.
- :func:`rejection_rate` -- the share of (unseen) scores below the threshold.
- :func:`tradeoff` -- known images kept and unseen images rejected at each threshold (the
  curve of the evaluation report).

Saved format, in the model folder (and so in the bento's model):

- ``guard.json``: ``{"format": "planets-guard/4", "metric":
  "cosine-euclidean-image-knn-classwise", "k", "threshold" (0.5), "class_thresholds" (``t_c``,
  one per class), "euclidean_thresholds" (``d_c``), "image_thresholds" (``i_c``),
  "joint_thresholds" (``m_c``), "image_statistics" (:data:`planets_mlops.imagestats.VERSION`),
  "image_scale" (each statistic's spread in each class's bank rows, one list per class),
  "bank_class_rows" (how many bank rows each class has), "coverage", "embedding_dim",
  "bank_size", "embedding_output", "calibration": {"count", "kept", ...}}``;
  ``embedding_output`` names the ONNX output that gives the embedding.
- ``guard_bank.npy``: float32 ``(bank_size, embedding_dim)``, the embeddings as the model
  gives them, sorted by class (the first ``bank_class_rows[0]`` rows are class 0's, and so
  on; loaded with ``allow_pickle=False``).
- ``guard_images.npy``: float32 ``(bank_size, statistics)``, the image statistics of the same
  bank images in the same order.

A guard with image statistics scores ``(embeddings, images)``: :meth:`Guard.scores` needs
the model inputs too (``needs_images``).

Guards of earlier versions still load and recognise exactly what they did:
``planets-guard/3`` (``cosine-euclidean-knn-classwise``: no image statistics),
``planets-guard/2`` (``cosine-knn-classwise``: the cosine distance alone, unit-length bank)
and ``planets-guard/1`` (one global threshold on ``s``: a guard of one class whose
threshold is the old one).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from planets_mlops.errors import DataError, InvalidParameterError
from planets_mlops.imagestats import STATISTICS, image_statistics
from planets_mlops.imagestats import VERSION as STATISTICS_VERSION
from planets_mlops.knobs import GuardParams

FORMAT = "planets-guard/4"
METRIC = "cosine-euclidean-image-knn-classwise"
# Earlier versions' formats, still read (see load_guard).
FORMAT_V3 = "planets-guard/3"
METRIC_V3 = "cosine-euclidean-knn-classwise"
FORMAT_V2 = "planets-guard/2"
METRIC_V2 = "cosine-knn-classwise"
FORMAT_V1 = "planets-guard/1"
METRIC_V1 = "cosine-knn"
# Recognised when the known score reaches this (the class's own threshold distance).
THRESHOLD = 0.5
# The smallest threshold distance 1 - t_c: a class whose calibration images all sit on
# training images would otherwise divide by zero.
_MIN_DISTANCE = 1e-6
GUARD_FILE = "guard.json"
BANK_FILE = "guard_bank.npy"
IMAGES_FILE = "guard_images.npy"
EMBEDDING_OUTPUT = "embedding"

# Scores are computed in blocks of this many rows: a (block, bank) similarity matrix of
# float32 stays a few MB whatever the number of images scored at once.
_BLOCK = 512


def _block_product(block: np.ndarray, bank_t: np.ndarray, row_by_row: bool = False) -> np.ndarray:
    """``block @ bank_t``; with ``row_by_row``, one row at a time.

    OpenBLAS picks its kernel by the shape: a single row goes to a matrix-vector kernel,
    several to a matrix-matrix one (or, for a small product, a small-matrix one), and their
    sums round differently (~1e-12 in a score). Row by row, a row's values are the same
    whatever else is in the block: the service answers each image with the bits it would
    get alone, whether it came alone, in a ``/predict_batch`` or coalesced with other
    requests (``planets_mlops.service.coalesce``). A single row against the bank is
    memory-bound either way (a product of 2 rows packs the bank first and cost ~3x as much).
    """
    if not row_by_row or len(block) == 1:
        return block @ bank_t
    return np.concatenate([block[i : i + 1] @ bank_t for i in range(len(block))])


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
    return _knn(bank, embeddings, k)[0]


def _unit64(array: np.ndarray) -> np.ndarray:
    array = array.astype(np.float64)
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return np.divide(array, norms, out=np.zeros_like(array), where=norms > 0)


def _knn(bank: Any, embeddings: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`knn_scores` and the index of each embedding's nearest bank row.

    Computed in float64 on rows normalised again: the class-wise score divides a cosine
    distance by a small threshold distance, so float32 rounding (1e-7) would show.
    """
    return _knn_unit(_unit64(_as_matrix(bank, "bank")), embeddings, k)


def _knn_unit(
    bank64: np.ndarray, embeddings: Any, k: int, row_by_row: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_knn` against a bank already made unit rows in float64 by :func:`_unit64`.

    ``row_by_row``: see :func:`_block_product`.
    """
    bank = bank64  # its length and width are checked against below
    queries = _as_matrix(embeddings, "embeddings")
    if queries.shape[1] != bank.shape[1]:
        raise DataError(
            f"Embeddings have {queries.shape[1]} dimensions but the guard's bank has {bank.shape[1]}; "
            "the guard belongs to another model."
        )
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(bank):
        raise InvalidParameterError("k", k, f"an integer in [1, {len(bank)}] (the bank size)")
    scores = np.empty(len(queries), np.float64)
    nearest = np.empty(len(queries), np.int64)
    for start in range(0, len(queries), _BLOCK):
        similarity = _block_product(_unit64(queries[start : start + _BLOCK]), bank64.T, row_by_row)
        nearest[start : start + _BLOCK] = np.argmax(similarity, axis=1)
        if k == 1:
            top = similarity.max(axis=1, keepdims=True)
        else:
            top = np.partition(similarity, len(bank) - k, axis=1)[:, len(bank) - k :]
        scores[start : start + _BLOCK] = top.mean(axis=1)
    # Rounding can push a unit dot product a hair past 1.
    return np.clip(scores, -1.0, 1.0), nearest


def _squared_norms(bank64: np.ndarray) -> np.ndarray:
    """The squared length of each row of ``bank64`` (float64)."""
    return np.einsum("ij,ij->i", bank64, bank64)


def _euclidean_knn(
    bank64: np.ndarray,
    embeddings: np.ndarray,
    k: int,
    squared_bank: np.ndarray | None = None,
    row_by_row: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean Euclidean distance to the ``k`` nearest rows of ``bank64``, and the nearest row.

    In float64 and in blocks; the caller has checked the inputs. ``squared_bank`` is
    :func:`_squared_norms` of the bank when the caller keeps it (a guard does: it was half
    of a request's guard cost). ``row_by_row``: see :func:`_block_product`.
    """
    if squared_bank is None:
        squared_bank = _squared_norms(bank64)
    distances = np.empty(len(embeddings), np.float64)
    nearest = np.empty(len(embeddings), np.int64)
    for start in range(0, len(embeddings), _BLOCK):
        block = embeddings[start : start + _BLOCK].astype(np.float64)
        product = _block_product(block, bank64.T, row_by_row)
        distances[start : start + _BLOCK], nearest[start : start + _BLOCK] = _euclidean_of(
            block, product, k, squared_bank
        )
    return distances, nearest


def _euclidean_of(
    block: np.ndarray, product: np.ndarray, k: int, squared_bank: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_euclidean_knn` of one block from its product with the bank."""
    squared = np.einsum("ij,ij->i", block, block)[:, None] - 2.0 * product + squared_bank
    squared = np.maximum(squared, 0.0)
    nearest = np.argmin(squared, axis=1)
    low = squared.min(axis=1, keepdims=True) if k == 1 else np.partition(squared, k - 1, axis=1)[:, :k]
    return np.sqrt(low).mean(axis=1), nearest


def _one_pass_knn(
    bank64: np.ndarray, embeddings: np.ndarray, k: int, squared_bank: np.ndarray, bank_norms: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_knn_unit` and :func:`_euclidean_knn` (row by row) from one product with the bank.

    ``bank64`` is the bank as it is (not unit rows); the cosine similarity is the product
    over the two lengths, ``q.b / (|q| |b|)``, where :func:`_knn_unit` multiplies the unit
    rows: the same within ~6e-16 (measured on 1,400 queries of the benchmark's model, the
    nearest class always the same), for one pass over the bank instead of two, each of
    which reads its 2.4 MB. The Euclidean distances are those of :func:`_euclidean_knn`
    row by row, to the bit.

    Returns:
        (similarity, nearest row by cosine, Euclidean distance, nearest row by distance).
    """
    count = len(embeddings)
    similarity, nearest = np.empty(count, np.float64), np.empty(count, np.int64)
    distances, closest = np.empty(count, np.float64), np.empty(count, np.int64)
    for start in range(0, count, _BLOCK):
        block = embeddings[start : start + _BLOCK].astype(np.float64)
        product = _block_product(block, bank64.T, row_by_row=True)
        part = slice(start, start + len(block))
        distances[part], closest[part] = _euclidean_of(block, product, k, squared_bank)
        lengths = np.sqrt(np.einsum("ij,ij->i", block, block))[:, None] * bank_norms
        cosine = np.divide(product, lengths, out=np.zeros_like(product), where=lengths > 0)
        nearest[part] = np.argmax(cosine, axis=1)
        top = (
            cosine.max(axis=1, keepdims=True)
            if k == 1
            else np.partition(cosine, len(bank64) - k, axis=1)[:, len(bank64) - k :]
        )
        similarity[part] = top.mean(axis=1)
    return np.clip(similarity, -1.0, 1.0), nearest, distances, closest


def _distance_limit(distances: Any, coverage: float) -> float:
    """The lowest distance that keeps at least ``coverage`` of ``distances`` (at or below it)."""
    return -calibrate_threshold(-np.asarray(distances, np.float64), coverage)


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
    """A fitted guard: the bank (unit rows), the class of each row and each class's threshold.

    Attributes:
        bank: Unit-length reference embeddings ``(m, d)``.
        labels: The class index of each bank row ``(m,)``.
        class_thresholds: The calibrated similarity ``t_c`` of each class.
        coverage: The share of calibration images the thresholds keep in each class.
        k: Neighbours averaged in the similarity.
        calibration: Counts and shares of the calibration (for reports).
        euclidean_thresholds: The calibrated Euclidean distance ``d_c`` of each class; None:
            the cosine distance alone (a ``planets-guard/2`` or ``/1`` guard).
        joint_thresholds: The joint threshold ``m_c`` of each class (with
            ``euclidean_thresholds``).
        image_bank: The standardised image statistics of the bank images ``(m, s)``, in the
            bank's order; None: the embedding alone (a ``planets-guard/3`` or earlier guard).
        image_scale: Each statistic's spread in each class's bank rows ``(classes, s)``.
        image_thresholds: The calibrated image-statistics distance ``i_c`` of each class.
    """

    bank: np.ndarray
    labels: np.ndarray
    class_thresholds: np.ndarray
    coverage: float
    k: int = 1
    calibration: dict[str, Any] = field(default_factory=dict)
    euclidean_thresholds: np.ndarray | None = None
    joint_thresholds: np.ndarray | None = None
    image_bank: np.ndarray | None = None
    image_scale: np.ndarray | None = None
    image_thresholds: np.ndarray | None = None

    @property
    def needs_images(self) -> bool:
        """Whether :meth:`scores` needs the model inputs too (a guard with image statistics)."""
        return self.image_bank is not None

    @cached_property
    def _bank64(self) -> np.ndarray:
        """The bank checked and made unit rows in float64, once.

        Not on every call: the service scores one image a request, and the bank's check and
        normalisation were three passes over it each time (most of a request's guard cost).
        """
        return _unit64(_as_matrix(self.bank, "bank"))

    @cached_property
    def _raw64(self) -> np.ndarray:
        """The bank as float64, for the Euclidean distance."""
        return _as_matrix(self.bank, "bank").astype(np.float64)

    @cached_property
    def _raw_squared(self) -> np.ndarray:
        """The squared length of each row of :attr:`_raw64`, once (the same sums as per call)."""
        return _squared_norms(self._raw64)

    @cached_property
    def _raw_norms(self) -> np.ndarray:
        """The length of each row of :attr:`_raw64` (the one-pass cosine's denominator)."""
        return np.sqrt(self._raw_squared)

    @property
    def threshold(self) -> float:
        """The known score an image needs to be recognised (:data:`THRESHOLD`)."""
        return THRESHOLD

    @classmethod
    def fit(
        cls,
        bank_embeddings: Any,
        calibration_embeddings: Any,
        params: GuardParams | None = None,
        bank_labels: Any = None,
        bank_statistics: Any = None,
        calibration_statistics: Any = None,
        calibration_labels: Any = None,
    ) -> Guard:
        """Bank the reference embeddings; set each class's threshold on the calibration ones.

        Args:
            bank_embeddings: Embeddings of the training images (and of benign changes of
                them), ``(m, d)``.
            calibration_embeddings: Embeddings of known images that are not in the bank
                (validation images, as they are and under benign changes, that the model
                classifies right), ``(n, d)``: their scores stand for those of new images of
                known classes.
            params: ``coverage``, the share of calibration images each class's threshold
                keeps, and ``k``, the neighbours averaged in the similarity (checked when
                they were made); None: the defaults.
            bank_labels: The class index of each bank row; ``None`` puts every row in one
                class (one global threshold).
            bank_statistics: :func:`planets_mlops.imagestats.image_statistics` of the bank
                images, row for row; with ``calibration_statistics`` (of the calibration
                images), the guard also compares the images themselves (``planets-guard/4``);
                None: the embedding alone.
            calibration_statistics: The image statistics of the calibration images.
            calibration_labels: The class of each calibration image (it is classified right);
                each class's image threshold is calibrated on its own images. None: on the
                images whose nearest bank embedding is of that class.

        Returns:
            The guard, with ``calibration`` = ``{"count", "kept", "per_class"}``.

        Raises:
            DataError: empty, broken or mismatched embeddings or labels.
        """
        params = params or GuardParams()
        coverage, k = float(params.coverage), params.k
        bank = _as_matrix(bank_embeddings, "bank embeddings")
        if not np.any(np.linalg.norm(bank, axis=1) > 0):
            raise DataError("Every training embedding is zero: the model has learnt nothing to compare with.")
        labels = _labels(bank_labels, len(bank))
        # Sorted by class, as saved: a class's rows are then a count in guard.json.
        order = np.argsort(labels, kind="stable")
        bank, labels = bank[order], labels[order]
        calibration_embeddings = _as_matrix(calibration_embeddings, "calibration embeddings")
        if (bank_statistics is None) != (calibration_statistics is None):
            raise DataError(
                "Give the image statistics of both the bank and the calibration images, or of neither."
            )
        calibration_stats: np.ndarray | None = None
        if bank_statistics is not None:
            stats = _statistics(bank_statistics, "bank statistics", len(bank))[order]
            calibration_stats = _statistics(
                calibration_statistics, "calibration statistics", len(calibration_embeddings)
            )
        similarity, nearest = nearest_neighbours(bank, labels, calibration_embeddings, k)
        classes = int(labels.max()) + 1

        def per_class(values: np.ndarray, of: np.ndarray, limit: Any) -> np.ndarray:
            overall = limit(values, coverage)
            return np.array(
                [limit(values[of == c], coverage) if np.any(of == c) else overall for c in range(classes)]
            )

        thresholds = per_class(similarity, nearest, calibrate_threshold)
        guard = cls(bank, labels, thresholds, coverage, k)
        distance, closest = _euclidean_knn(guard._raw64, calibration_embeddings, k)
        euclidean = per_class(distance, labels[closest], _distance_limit)
        guard = replace(guard, euclidean_thresholds=euclidean, joint_thresholds=np.ones(classes))
        own = nearest if calibration_labels is None else _labels(calibration_labels, len(nearest))
        if calibration_stats is not None:
            scale = _class_scales(stats, labels, classes)
            guard = replace(guard, image_bank=stats, image_scale=scale)
            image = per_class(guard._image_distance(calibration_stats, own), own, _distance_limit)
            guard = replace(guard, image_thresholds=image)
        ratio, _ = guard._ratios(calibration_embeddings, calibration_stats)
        if calibration_stats is not None and calibration_labels is not None:
            # The joint threshold of a class is set on its own images: one of another class
            # whose embedding lies nearest this class's but whose image does not look like it
            # would otherwise stretch the class's threshold to keep it.
            agree = nearest == own
            joint = per_class(ratio[agree], nearest[agree], _distance_limit)
        else:
            joint = per_class(ratio, nearest, _distance_limit)
        guard = replace(guard, joint_thresholds=joint)
        kept = guard.recognised(guard._scores(calibration_embeddings, calibration_stats))
        counts = {str(c): int(np.sum(nearest == c)) for c in range(classes)}
        return replace(
            guard,
            calibration={"count": int(similarity.size), "kept": float(np.mean(kept)), "per_class": counts},
        )

    def scores(self, embeddings: Any, images: Any = None, row_by_row: bool = False) -> np.ndarray:
        """The known score of each embedding, in [0, 1]; recognised at ``>= 0.5``.

        Args:
            embeddings: The model's embeddings ``(n, d)``.
            images: The model inputs they are of ``(n, size, size, channels)``; needed by a
                guard with image statistics (:attr:`needs_images`), ignored by others.
            row_by_row: What the service asks: each score to the bit as if its image were
                scored alone (:func:`_block_product`), from one pass over the bank
                (:func:`_one_pass_knn`). Within ~1e-12 of the default, which is faster for
                large batches (evaluation, calibration).

        Raises:
            DataError: broken or mismatched embeddings or images, or no images for a guard
                that needs them.
        """
        embeddings = _as_matrix(embeddings, "embeddings")
        statistics = None
        if self.needs_images:
            if images is None:
                raise DataError(
                    "This guard also compares the images themselves (planets-guard/4): pass the model "
                    "inputs with the embeddings, guard.scores(embeddings, images)."
                )
            statistics = _statistics(image_statistics(images), "image statistics", len(embeddings))
        return self._scores(embeddings, statistics, row_by_row)

    def _scores(self, embeddings: Any, statistics: np.ndarray | None, row_by_row: bool = False) -> np.ndarray:
        """:meth:`scores` from the embeddings (checked by :func:`_as_matrix`) and their statistics."""
        ratio, nearest = self._ratios(embeddings, statistics, row_by_row)
        if self.joint_thresholds is not None:
            ratio = ratio / np.maximum(self.joint_thresholds[nearest], _MIN_DISTANCE)
        scores = np.clip(1.0 - ratio * (1.0 - THRESHOLD), 0.0, 1.0)
        # A blank input (all-zero embedding) is never known, whatever the thresholds.
        scores[~np.any(embeddings != 0, axis=1)] = 0.0
        return scores

    def _ratios(
        self, embeddings: np.ndarray, statistics: np.ndarray | None = None, row_by_row: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """``max(u, v, w)`` of the module docstring, and each embedding's nearest class by cosine.

        ``u`` alone for a guard without Euclidean thresholds, ``max(u, v)`` for one without
        image statistics (an earlier version's).
        """
        one_pass = row_by_row and self.euclidean_thresholds is not None
        if one_pass:
            similarity, nearest, euclidean, closest = _one_pass_knn(
                self._raw64, embeddings, self.k, self._raw_squared, self._raw_norms
            )
        else:
            similarity, nearest = _knn_unit(self._bank64, embeddings, self.k, row_by_row)
        nearest = self.labels[nearest]
        distance = np.maximum(1.0 - self.class_thresholds[nearest], _MIN_DISTANCE)
        ratio = (1.0 - similarity) / distance
        if self.euclidean_thresholds is not None:
            if not one_pass:
                euclidean, closest = _euclidean_knn(self._raw64, embeddings, self.k, self._raw_squared)
            limit = np.maximum(self.euclidean_thresholds[self.labels[closest]], _MIN_DISTANCE)
            ratio = np.maximum(ratio, euclidean / limit)
        if self.image_bank is not None and self.image_thresholds is not None and statistics is not None:
            limit = np.maximum(self.image_thresholds[nearest], _MIN_DISTANCE)
            ratio = np.maximum(ratio, self._image_distance(statistics, nearest, row_by_row) / limit)
        return ratio, nearest

    @cached_property
    def _image_rows(self) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Each class's bank statistics in units of its spreads (float64), and their squared norms."""
        assert self.image_scale is not None
        bank = np.asarray(self.image_bank, np.float64)
        rows = {int(c): bank[self.labels == c] / self.image_scale[c] for c in np.unique(self.labels)}
        return {c: (scaled, _squared_norms(scaled)) for c, scaled in rows.items()}

    def _image_distance(
        self, statistics: np.ndarray, classes: np.ndarray, row_by_row: bool = False
    ) -> np.ndarray:
        """Euclidean distance from each image's statistics to the nearest bank image of its class."""
        assert self.image_scale is not None
        queries = np.asarray(statistics, np.float64)
        distance = np.full(len(queries), np.inf)
        # Each class present once (a set of a few Python ints: np.unique costs more per request).
        for c in sorted(set(classes.tolist())):
            if c not in self._image_rows:
                continue
            rows, squared_rows = self._image_rows[c]
            chosen = classes == c
            distance[chosen] = _euclidean_knn(
                rows, queries[chosen] / self.image_scale[c], 1, squared_rows, row_by_row
            )[0]
        return distance

    def recognised(self, scores: Any) -> np.ndarray:
        """Boolean mask: the score reaches the threshold."""
        return np.asarray(scores, dtype=np.float64) >= THRESHOLD

    def describe(self) -> dict[str, Any]:
        """The ``guard.json`` document."""
        doc: dict[str, Any] = {
            "format": FORMAT_V2,
            "metric": METRIC_V2,
            "k": self.k,
            "threshold": THRESHOLD,
            "class_thresholds": [float(t) for t in self.class_thresholds],
        }
        if self.euclidean_thresholds is not None and self.joint_thresholds is not None:
            # Without them (a guard built by hand with cosine thresholds only), the document
            # is the cosine-only planets-guard/2 one, which scores the same.
            doc.update(
                format=FORMAT_V3,
                metric=METRIC_V3,
                euclidean_thresholds=[float(t) for t in self.euclidean_thresholds],
                joint_thresholds=[float(t) for t in self.joint_thresholds],
            )
            if (
                self.image_bank is not None
                and self.image_thresholds is not None
                and self.image_scale is not None
            ):
                doc.update(
                    format=FORMAT,
                    metric=METRIC,
                    image_thresholds=[float(t) for t in self.image_thresholds],
                    image_statistics=STATISTICS_VERSION,
                    image_scale=[[float(v) for v in row] for row in self.image_scale],
                )
        return {
            **doc,
            "coverage": self.coverage,
            "embedding_dim": int(self.bank.shape[1]),
            "bank_size": int(self.bank.shape[0]),
            "embedding_output": EMBEDDING_OUTPUT,
            "calibration": self.calibration,
            "bank_class_rows": np.bincount(self.labels, minlength=len(self.class_thresholds)).tolist(),
        }

    def save(self, folder: Path) -> None:
        """Write ``guard.json`` and ``guard_bank.npy`` into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        order = np.argsort(self.labels, kind="stable")
        np.save(folder / BANK_FILE, self.bank[order].astype(np.float32))
        if self.describe()["format"] == FORMAT:
            np.save(folder / IMAGES_FILE, np.asarray(self.image_bank)[order].astype(np.float32))
        (folder / GUARD_FILE).write_text(json.dumps(self.describe()))


def _class_scales(statistics: np.ndarray, labels: np.ndarray, classes: int) -> np.ndarray:
    """Each statistic's spread within each class's rows, ``(classes, s)``.

    Floored at a twentieth of its spread over all rows: a statistic nearly constant within a
    class (the background's share of the image) must not turn a small change into a far one.
    """
    overall = statistics.std(axis=0)
    floor = np.maximum(0.05 * overall, _MIN_DISTANCE)
    spreads = [
        statistics[labels == c].std(axis=0) if np.any(labels == c) else overall for c in range(classes)
    ]
    return np.maximum(np.asarray(spreads), floor)


def _statistics(statistics: Any, name: str, count: int) -> np.ndarray:
    array = _as_matrix(statistics, name).astype(np.float64)
    if array.shape != (count, len(STATISTICS)):
        raise DataError(
            f"{name} must be {count} rows of {len(STATISTICS)} image statistics (planets_mlops.imagestats), "
            f"one per embedding; got shape {array.shape}."
        )
    return array


def _labels(labels: Any, count: int) -> np.ndarray:
    if labels is None:
        return np.zeros(count, np.int64)
    array = np.asarray(labels)
    if array.shape != (count,) or not np.issubdtype(array.dtype, np.integer) or (count and array.min() < 0):
        raise DataError(
            f"Bank labels must be {count} non-negative class indices, one per bank row; got shape "
            f"{array.shape} of {array.dtype}."
        )
    return array.astype(np.int64)


def nearest_neighbours(
    bank: np.ndarray, labels: np.ndarray, embeddings: Any, k: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """The similarity ``s`` (:func:`knn_scores`) and the class of the nearest bank row."""
    similarity, nearest = _knn(bank, embeddings, k)
    return similarity, labels[nearest]


def tradeoff(known_scores: Any, unseen_scores: Any = None, thresholds: Any = None) -> dict[str, list[float]]:
    """Known images kept, and unseen images rejected, at each threshold on the known score.

    Args:
        known_scores: Scores of images of known classes (or of benign changes of them).
        unseen_scores: Scores of images of classes the model never saw; optional.
        thresholds: Where to measure; 101 points from 0 to 1 by default.

    Returns:
        ``{"threshold": [...], "kept": [...]}`` and, with ``unseen_scores``, ``"rejected"``.
    """
    grid = np.linspace(0.0, 1.0, 101) if thresholds is None else np.asarray(thresholds, np.float64)
    known = np.asarray(known_scores, np.float64).ravel()
    curve = {
        "threshold": grid.tolist(),
        "kept": [float(np.mean(known >= t)) if known.size else 0.0 for t in grid],
    }
    if unseen_scores is not None and np.asarray(unseen_scores).size:
        unseen = np.asarray(unseen_scores, np.float64).ravel()
        curve["rejected"] = [float(np.mean(unseen < t)) for t in grid]
    return curve


def has_guard(folder: Path) -> bool:
    """Whether ``folder`` (a model folder) holds a guard."""
    return (Path(folder) / GUARD_FILE).is_file()


def load_guard(folder: Path) -> Guard:
    """Read the guard saved by :meth:`Guard.save` (or a ``planets-guard/1`` one).

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
    found = (doc.get("format"), doc.get("metric")) if isinstance(doc, dict) else (None, None)
    known = ((FORMAT, METRIC), (FORMAT_V3, METRIC_V3), (FORMAT_V2, METRIC_V2), (FORMAT_V1, METRIC_V1))
    if found not in known:
        raise DataError(
            f"{str(path)!r} is a guard of format {found[0]!r} and metric {found[1]!r}; this version "
            f"reads {', '.join(f'{f} ({m})' for f, m in known[:-1])} and {known[-1][0]} ({known[-1][1]}). "
            "Retrain the model with this version, or serve it with the version that trained it."
        )
    bank = _as_matrix(bank, str(folder / BANK_FILE))
    try:
        shape = (int(doc["bank_size"]), int(doc["embedding_dim"]))
        k = int(doc["k"])
        coverage = check_coverage(doc["coverage"])
        if found[0] == FORMAT_V1:
            labels = np.zeros(shape[0], np.int64)
            thresholds = np.array([float(doc["threshold"])])
        else:
            rows = [int(count) for count in doc["bank_class_rows"]]
            if sum(rows) != shape[0] or min(rows, default=0) < 0:
                raise ValueError(f"bank_class_rows {rows} do not add up to bank_size {shape[0]}")
            labels = np.repeat(np.arange(len(rows)), rows)
            thresholds = np.asarray([float(t) for t in doc["class_thresholds"]], np.float64)
        if found[0] in (FORMAT, FORMAT_V3):
            euclidean = np.asarray([float(t) for t in doc["euclidean_thresholds"]], np.float64)
            joint = np.asarray([float(t) for t in doc["joint_thresholds"]], np.float64)
            if euclidean.shape != thresholds.shape or joint.shape != thresholds.shape:
                raise ValueError(
                    f"{len(thresholds)} class thresholds, {len(euclidean)} Euclidean and {len(joint)} joint"
                )
            extra = {"euclidean_thresholds": euclidean, "joint_thresholds": joint}
        else:
            extra = {}
        images = None
        if found[0] == FORMAT:
            if doc["image_statistics"] != STATISTICS_VERSION:
                raise ValueError(
                    f"image statistics {doc['image_statistics']!r}; this version computes "
                    f"{STATISTICS_VERSION!r}"
                )
            extra["image_thresholds"] = np.asarray([float(t) for t in doc["image_thresholds"]], np.float64)
            extra["image_scale"] = np.asarray(
                [[float(v) for v in row] for row in doc["image_scale"]], np.float64
            ).reshape(-1, len(STATISTICS))
            if extra["image_thresholds"].shape != thresholds.shape:
                raise ValueError(
                    f"{len(thresholds)} class thresholds, {len(extra['image_thresholds'])} image"
                )
            if extra["image_scale"].shape != (len(thresholds), len(STATISTICS)):
                raise ValueError(
                    f"image_scale must hold {len(STATISTICS)} values for each of {len(thresholds)} classes"
                )
            images = np.load(folder / IMAGES_FILE, allow_pickle=False)
    except OSError as exc:
        raise DataError(
            f"Cannot read {IMAGES_FILE} beside {str(path)!r}: {exc}. Retrain the model to write it."
        ) from exc
    except (KeyError, TypeError, ValueError, DataError, InvalidParameterError) as exc:
        raise DataError(f"{str(path)!r} is malformed ({exc!r}). Retrain the model to rewrite it.") from exc
    if images is not None:
        images = _as_matrix(images, str(folder / IMAGES_FILE))
        if images.shape != (shape[0], len(STATISTICS)) or np.any(extra["image_scale"] <= 0):
            raise DataError(
                f"{IMAGES_FILE} has shape {images.shape}, not {(shape[0], len(STATISTICS))}, or "
                "image_scale is not positive: the guard files do not belong together. Retrain the model "
                "to rewrite them."
            )
        extra["image_bank"] = images
    if bank.shape != shape or not 1 <= k <= len(bank):
        raise DataError(
            f"{BANK_FILE} has shape {bank.shape} but {GUARD_FILE} says {shape} with k={k}: "
            "the guard files do not belong together. Retrain the model to rewrite them."
        )
    limits = np.concatenate([thresholds, *(np.ravel(v) for key, v in extra.items() if key != "image_bank")])
    if len(labels) and (labels.max() >= len(thresholds) or not np.all(np.isfinite(limits))):
        raise DataError(
            f"{str(path)!r} has {len(thresholds)} class thresholds for bank labels up to {labels.max()} "
            "(or non-finite thresholds). Retrain the model to rewrite it."
        )
    return Guard(bank, labels, thresholds, coverage, k, doc.get("calibration", {}), **extra)
