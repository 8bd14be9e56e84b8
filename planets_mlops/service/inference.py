"""Bytes in, answer out: what the service computes for each request, without BentoML.

The tensor comes from :func:`planets_mlops.preprocess.preprocess_image`, the very
function ``prepare_dataset`` used to build the training shards, so a served image and a
training image go through the same code (``tests/test_parity.py`` checks it bit for bit).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from planets_mlops.errors import DataError
from planets_mlops.imaging import LIMITS, ImageHeader, ImageLimits, read_header
from planets_mlops.preprocess import PreprocessConfig, preprocess_image


class Cancelled(Exception):
    """The request's deadline passed; its remaining images were not decoded."""


def read_headers(blobs: Sequence[bytes], limits: ImageLimits = LIMITS) -> list[ImageHeader]:
    """The header of every blob (format, mode, size), checked against the image limits.

    Nothing is decoded: this is what the per-request pixel budget and the light/heavy
    split are computed from (a JPEG's scans are counted from its markers).

    Raises:
        planets_mlops.errors.DataError: a blob is empty, of a refused format or too large;
            the message names its position in a batch.
    """
    headers = []
    for position, blob in enumerate(blobs):
        try:
            headers.append(read_header(blob, limits))
        except DataError as exc:
            if len(blobs) == 1:
                raise
            raise DataError(f"Image {position} of {len(blobs)}: {exc}") from exc
    return headers


def images_to_batch(
    blobs: Sequence[bytes],
    config: PreprocessConfig,
    cancelled: Callable[[], bool] | None = None,
    limits: ImageLimits = LIMITS,
) -> np.ndarray:
    """Preprocess raw image files into one model batch ``(n, size, size, channels)``.

    Args:
        blobs: The image files.
        config: The model's preprocessing.
        cancelled: Asked before each image; when it answers True, stop with
            :class:`Cancelled` (the caller's deadline passed).
        limits: The image limits (the project's one set unless a test narrows them).

    Raises:
        planets_mlops.errors.DataError: one of the blobs is not a decodable image; the
            message names its position.
        Cancelled: ``cancelled()`` answered True.
    """
    tensors = []
    for position, blob in enumerate(blobs):
        if cancelled is not None and cancelled():
            raise Cancelled
        try:
            tensors.append(preprocess_image(blob, config, limits))
        except DataError as exc:
            if len(blobs) == 1:
                raise
            raise DataError(f"Image {position} of {len(blobs)}: {exc}") from exc
    return np.stack(tensors).astype(np.float32, copy=False)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (rows sum to 1 within 1e-12)."""
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def answers(
    logits: np.ndarray,
    classes: Sequence[str],
    known_scores: np.ndarray | None = None,
    threshold: float | None = None,
) -> list[dict[str, Any]]:
    """One answer per row of ``logits``.

    Without a guard: ``{"prediction", "closest_class", "probabilities"}``, the prediction
    being the arg-max of the logits (the same as of the probabilities).

    With a guard's ``known_scores`` and ``threshold`` (see :mod:`planets_mlops.guard`),
    each answer also says ``"recognised"`` (score >= threshold), ``"known_score"`` and
    ``"known_threshold"``; an unrecognised image gets ``"prediction": None`` and only its
    ``"closest_class"``, so it is never presented as a confident class.
    """
    probabilities = softmax(logits)
    best = np.argmax(logits, axis=-1)
    results = []
    for row, (index, row_probabilities) in enumerate(zip(best, probabilities)):
        answer: dict[str, Any] = {
            "prediction": classes[int(index)],
            "closest_class": classes[int(index)],
            "probabilities": dict(zip(classes, row_probabilities.tolist())),
        }
        if known_scores is not None and threshold is not None:
            score = float(known_scores[row])
            recognised = score >= threshold
            answer.update(recognised=recognised, known_score=score, known_threshold=float(threshold))
            if not recognised:
                answer["prediction"] = None
        results.append(answer)
    return results


def onnx_session(model_path: str, threads: int = 1) -> Any:
    """An ONNX Runtime CPU session with ``threads`` intra- and inter-op threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = threads
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    return ort.InferenceSession(model_path, sess_options=options, providers=["CPUExecutionProvider"])
