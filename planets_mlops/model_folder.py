"""The model folder: its file names, what it must hold, how it loads and how it runs.

``train_model`` writes it; evaluation, packaging, the registry, Label Studio predictions,
monitoring and the service read it, all through this module (the one owner, in the manner
of ZenML's materializers)::

    model.keras        the trained Keras model (training's own copy; nothing serves it)
    model.onnx         the same model for ONNX Runtime: outputs ``logits`` (first, what
                       every reader classifies with) and ``embedding`` (what the guard scores)
    classes.json       class names, index = model output
    preprocess.json    how images become model input (planets_mlops.preprocess), and under
                       ``training_augmentation`` what training changed in them
    history.json       per-epoch loss/accuracy/val_loss/val_accuracy
    guard.json         the open-set guard's thresholds and settings (planets_mlops.guard)
    guard_bank.npy     the guard's unit-length training embeddings
    guard_images.npy   the guard's image statistics of the same training images (planets-guard/4)
    monitoring_reference.json  the validation images' features, projected embeddings and
                       predictions (planets_mlops.monitoring.reference)

The service imports this module, so it travels in the bento: NumPy and the guard at the
top, ONNX Runtime inside functions, never TensorFlow.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from planets_mlops.errors import DataError

# Re-exported: the guard names its own files, and this module names them all.
from planets_mlops.guard import BANK_FILE as BANK_FILE
from planets_mlops.guard import EMBEDDING_OUTPUT as EMBEDDING_OUTPUT
from planets_mlops.guard import GUARD_FILE as GUARD_FILE
from planets_mlops.guard import IMAGES_FILE as IMAGES_FILE
from planets_mlops.guard import Guard, has_guard, load_guard

if TYPE_CHECKING:
    from planets_mlops.preprocess import PreprocessConfig

log = logging.getLogger(__name__)

KERAS_FILE = "model.keras"
ONNX_FILE = "model.onnx"
CLASSES_FILE = "classes.json"
PREPROCESS_FILE = "preprocess.json"
HISTORY_FILE = "history.json"
REFERENCE_FILE = "monitoring_reference.json"
# The ONNX model's outputs, in this order.
LOGITS_OUTPUT = "logits"

# What a model folder must hold to be packaged and served, and what travels with it when
# present (the guard, the monitoring reference, the training history).
REQUIRED_FILES = (ONNX_FILE, CLASSES_FILE, PREPROCESS_FILE)
OPTIONAL_FILES = (HISTORY_FILE, GUARD_FILE, BANK_FILE, IMAGES_FILE, REFERENCE_FILE)


def missing_files(folder: Path, names: Sequence[str] = REQUIRED_FILES) -> list[str]:
    """The files of ``names`` that ``folder`` lacks."""
    return [name for name in names if not (Path(folder) / name).is_file()]


def read_classes(folder: Path) -> list[str]:
    """The class names of the model in ``folder`` (``classes.json``, as written)."""
    classes: list[str] = json.loads((Path(folder) / CLASSES_FILE).read_text())
    return classes


def read_preprocess(folder: Path) -> dict[str, Any]:
    """The whole ``preprocess.json`` (the preprocessing and training's augmentation)."""
    document: dict[str, Any] = json.loads((Path(folder) / PREPROCESS_FILE).read_text())
    return document


def read_config(folder: Path) -> PreprocessConfig:
    """The model's preprocessing (``preprocess.json``) as a :class:`PreprocessConfig`."""
    from planets_mlops.preprocess import PreprocessConfig

    return PreprocessConfig.from_dict(read_preprocess(folder))


def read_classes_and_config(folder: Path) -> tuple[list[str], PreprocessConfig]:
    """Classes and preprocessing, or a :class:`DataError` naming the folder and the fix."""
    try:
        return read_classes(folder), read_config(folder)
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(
            f"Model folder {str(folder)!r} lacks a readable {CLASSES_FILE}/{PREPROCESS_FILE} "
            f"({exc}). Pass the folder written by train_model."
        ) from exc


def read_history(folder: Path) -> dict[str, list[float]]:
    """The training history (``history.json``), empty when the folder has none."""
    path = Path(folder) / HISTORY_FILE
    return dict(json.loads(path.read_text())) if path.is_file() else {}


def write_description(
    folder: Path, classes: Sequence[str], preprocess: dict[str, Any], history: dict[str, list[float]]
) -> None:
    """Write what describes the model beside ``model.onnx``: classes, preprocessing, history."""
    folder = Path(folder)
    (folder / CLASSES_FILE).write_text(json.dumps(list(classes)))
    (folder / PREPROCESS_FILE).write_text(json.dumps(preprocess))
    (folder / HISTORY_FILE).write_text(json.dumps(history, indent=1))


def open_session(model_path: str | Path, threads: int = 1) -> Any:
    """An ONNX Runtime CPU session with ``threads`` intra- and inter-op threads.

    ``model_path`` is the ``.onnx`` file itself; see :func:`load_session` for a folder.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = threads
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    return ort.InferenceSession(str(model_path), sess_options=options, providers=["CPUExecutionProvider"])


def load_session(model_dir: Path, threads: int = 1) -> Any:
    """The session of ``model_dir``'s ``model.onnx`` (one thread: small model, predictable CPU)."""
    path = Path(model_dir) / ONNX_FILE
    if not path.is_file():
        raise DataError(
            f"{str(path)!r} not found: {str(model_dir)!r} is not a model folder from train_model."
        )
    return open_session(path, threads)


def run_outputs(
    session: Any, images: np.ndarray, batch_size: int = 256, outputs: int = 2
) -> tuple[np.ndarray, np.ndarray | None]:
    """Logits and embeddings of a float32 batch ``(N, H, W, C)``, in batches of ``batch_size``.

    The embeddings are ``None`` for a model exported without them or when ``outputs`` is 1.
    """
    name = session.get_inputs()[0].name
    wanted = [output.name for output in session.get_outputs()][:outputs]
    parts = [
        session.run(wanted, {name: np.ascontiguousarray(images[i : i + batch_size], np.float32)})
        for i in range(0, len(images), batch_size)
    ]
    if not parts:
        return np.zeros((0, 0), np.float32), None
    logits = np.concatenate([part[0] for part in parts])
    embedding = np.concatenate([part[1] for part in parts]) if len(wanted) > 1 else None
    return logits, embedding


def predict_outputs(
    model_dir: Path, images: np.ndarray, batch_size: int = 256
) -> tuple[np.ndarray, np.ndarray | None]:
    """Logits and penultimate-layer embeddings (``None`` for a model exported without them).

    Needs only ``model.onnx``: training calls it to fit the guard before the rest is written.
    """
    return run_outputs(load_session(model_dir), images, batch_size)


def predict_logits(model_dir: Path, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Logits of the model in ``model_dir`` for a float32 batch (N, H, W, C)."""
    return predict_outputs(model_dir, images, batch_size)[0]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64, the row maximum subtracted first (rows sum to 1 within 1e-12)."""
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def answers(
    logits: np.ndarray,
    classes: Sequence[str],
    known_scores: np.ndarray | None = None,
    threshold: float | None = None,
) -> list[dict[str, Any]]:
    """One answer per row of ``logits`` (what the service answers).

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


def guard_of(folder: Path, session: Any) -> Guard | None:
    """The model's open-set guard, or None for a model folder without one.

    Raises:
        DataError: the guard is unreadable, or the model has no embedding output for it to
            score.
    """
    if not has_guard(folder):
        log.warning("Model folder %s has no open-set guard: answers cannot say 'not recognised'", folder)
        return None
    guard = load_guard(folder)
    names = [output.name for output in session.get_outputs()]
    if len(names) < 2 or names[1] != EMBEDDING_OUTPUT:
        raise DataError(
            f"The model in {folder} has a guard but its ONNX outputs are {names}, not "
            f"[{LOGITS_OUTPUT}, {EMBEDDING_OUTPUT}]. Retrain the model with train_model."
        )
    return guard


def model_scores(model_dir: Path, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, float | None]:
    """Logits, and the open-set guard's scores and threshold when the model folder has a guard.

    Args:
        model_dir: A model folder from ``train_model``.
        images: Model inputs ``(n, size, size, channels)``.

    Returns:
        ``(logits, known_scores, threshold)``; the last two are None without a guard (or
        when ``model.onnx`` has no embedding output).
    """
    session = load_session(Path(model_dir))
    outputs = [output.name for output in session.get_outputs()]
    with_embedding = has_guard(Path(model_dir)) and EMBEDDING_OUTPUT in outputs
    logits, embedding = run_outputs(session, images, outputs=2 if with_embedding else 1)
    if not with_embedding or embedding is None:
        return logits, None, None
    guard = load_guard(Path(model_dir))
    return logits, guard.scores(embedding, images), guard.threshold


class LoadedModel:
    """A model folder loaded to answer the way the service answers: preprocessing, ONNX, guard.

    Attributes:
        folder: The model folder.
        classes: Class names, index = model output.
        preprocess: The whole ``preprocess.json``.
        config: The preprocessing as a :class:`PreprocessConfig`.
        session: The ONNX Runtime session.
        guard: The open-set guard, or None.
    """

    def __init__(self, folder: Path, threads: int = 1, embeddings: bool = False) -> None:
        """Load ``folder``'s classes, preprocessing, ``model.onnx`` and guard (if any).

        ``embeddings``: also run the embedding output without a guard (for monitoring records).
        """
        from planets_mlops.preprocess import PreprocessConfig

        self.folder = Path(folder)
        self.classes = read_classes(self.folder)
        self.preprocess = read_preprocess(self.folder)
        self.config = PreprocessConfig.from_dict(self.preprocess)
        self.session = open_session(self.folder / ONNX_FILE, threads)
        self.input_name = self.session.get_inputs()[0].name
        self.guard = guard_of(self.folder, self.session)
        wanted = 2 if self.guard is not None or embeddings else 1
        self.outputs = [output.name for output in self.session.get_outputs()][:wanted]

    def tensors(self, images: Sequence[bytes]) -> np.ndarray:
        """The model-input batch of encoded images."""
        from planets_mlops.preprocess import preprocess_image

        return np.stack([preprocess_image(data, self.config) for data in images]).astype(np.float32)

    def answer(
        self, batch: np.ndarray, row_by_row: bool = False
    ) -> tuple[list[dict[str, Any]], np.ndarray | None]:
        """The answers for the rows of a model-input batch, and the guard's embeddings of them.

        ``row_by_row``: each row's answer to the bit as if it were answered alone (the
        guard's products row by row; ONNX Runtime computes each row alone anyway).
        """
        outputs = self.session.run(self.outputs, {self.input_name: np.ascontiguousarray(batch, np.float32)})
        embeddings = outputs[1] if len(outputs) > 1 else None
        if self.guard is None or embeddings is None:
            return answers(outputs[0], self.classes), embeddings
        scores = self.guard.scores(embeddings, batch, row_by_row)
        return answers(outputs[0], self.classes, scores, self.guard.threshold), embeddings
