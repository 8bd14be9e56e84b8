"""Score a trained model on the validation split and write a report a person can read.

Predictions come from ONNX Runtime on ``model.onnx``, the exact artifact that is packaged
and served, so the evaluated numbers are the served model's numbers.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from planets_mlops.errors import DataError
from planets_mlops.prepare import load_manifest, load_split
from planets_mlops.train import CLASSES_FILE, HISTORY_FILE, ONNX_FILE

log = logging.getLogger(__name__)


def load_session(model_dir: Path) -> Any:
    """An ONNX Runtime session on one thread (small model, predictable CPU use)."""
    import onnxruntime as ort

    path = Path(model_dir) / ONNX_FILE
    if not path.is_file():
        raise DataError(
            f"{str(path)!r} not found: {str(model_dir)!r} is not a model folder from train_model."
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def predict_logits(model_dir: Path, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Logits of the model in ``model_dir`` for a float32 batch (N, H, W, C)."""
    session = load_session(model_dir)
    name = session.get_inputs()[0].name
    parts = [
        session.run(None, {name: np.ascontiguousarray(images[i : i + batch_size], np.float32)})[0]
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def classification_scores(logits: np.ndarray, labels: np.ndarray, classes: int) -> dict[str, Any]:
    """Loss, accuracy, macro precision/recall/F1 and the confusion matrix."""
    probabilities = softmax(logits.astype(np.float64))
    predictions = probabilities.argmax(axis=1)
    loss = float(-np.mean(np.log(np.clip(probabilities[np.arange(len(labels)), labels], 1e-12, 1.0))))
    matrix = confusion_matrix(labels, predictions, classes)
    true_positive = np.diag(matrix).astype(np.float64)
    predicted = matrix.sum(axis=0)
    actual = matrix.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, true_positive / predicted, 0.0)
        recall = np.where(actual > 0, true_positive / actual, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return {
        "val_loss": loss,
        "val_acc": float(np.mean(predictions == labels)),
        "precision_macro": float(precision.mean()),
        "recall_macro": float(recall.mean()),
        "f1_macro": float(f1.mean()),
        "confusion_matrix": matrix,
        "predictions": predictions,
        "probabilities": probabilities,
        "per_class_f1": f1,
    }


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def plot_history(history: dict[str, list[float]]) -> str:
    """Training curves (loss and accuracy per epoch) as base64 PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for key, style in ((metric, "-"), (f"val_{metric}", "--")):
            if key in history:
                epochs = range(1, len(history[key]) + 1)
                ax.plot(epochs, history[key], style, marker="o", label=key)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.legend()
        ax.grid(alpha=0.3)
    return _png(fig)


def plot_confusion(matrix: np.ndarray, classes: list[str]) -> str:
    """Row-normalised confusion matrix as base64 PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    totals = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    fig, ax = plt.subplots(figsize=(7, 6))
    image = ax.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(classes)):
        for j in range(len(classes)):
            if normalised[i, j] > 0:
                color = "white" if normalised[i, j] > 0.5 else "black"
                ax.text(j, i, f"{normalised[i, j]:.2f}", ha="center", va="center", fontsize=7, color=color)
    fig.colorbar(image, ax=ax)
    ax.set_title("Normalised confusion matrix")
    return _png(fig)


def plot_predictions(
    images: np.ndarray, labels: np.ndarray, predictions: np.ndarray, classes: list[str], count: int = 20
) -> str:
    """A grid of validation images with true/predicted class, right in green, wrong in red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = min(count, len(labels))
    # Show the mistakes first: they are what a reader wants to see.
    wrong = np.flatnonzero(predictions != labels)
    right = np.flatnonzero(predictions == labels)
    chosen = np.concatenate([wrong, right])[:count]
    columns = 5
    rows = max(1, (count + columns - 1) // columns)
    fig = plt.figure(figsize=(2.2 * columns, 2.4 * rows), tight_layout=True)
    for position, i in enumerate(chosen):
        ax = fig.add_subplot(rows, columns, position + 1)
        ax.imshow(np.squeeze(images[i]), cmap="gray")
        ok = predictions[i] == labels[i]
        ax.set_title(
            f"{'OK' if ok else 'WRONG'}\ntrue {classes[labels[i]]}\npred {classes[predictions[i]]}",
            color="green" if ok else "red",
            fontsize=8,
        )
        ax.axis("off")
    return _png(fig)


def render_report(
    metrics: dict[str, float],
    classes: list[str],
    history: dict,
    images: dict[str, str],
    comparison: dict[str, Any] | None,
    per_class_f1: np.ndarray,
) -> str:
    """The HTML report shown in the KFP UI."""
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.4f}</td></tr>" for k, v in metrics.items())
    class_rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{score:.3f}</td></tr>"
        for name, score in zip(classes, per_class_f1)
    )
    compare = "<p>No production model given: nothing to compare with.</p>"
    if comparison:
        compare = (
            f"<p>Production model <code>{html.escape(comparison['production_model_uri'])}</code>: "
            f"val_acc {comparison['production_val_acc']:.4f}, candidate {metrics['val_acc']:.4f} "
            f"(delta {comparison['delta_val_acc']:+.4f}). <b>{'Promote' if comparison['promote'] else 'Keep production'}</b>.</p>"  # noqa: E501
        )
    pictures = "".join(
        f"<h2>{html.escape(title)}</h2><img src='data:image/png;base64,{data}'/>"
        for title, data in images.items()
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Evaluation</title>"
        "<style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}"
        "td{border:1px solid #ccc;padding:2px 8px}</style></head><body>"
        f"<h1>Evaluation on {len(classes)} classes</h1><table>{rows}</table>"
        f"<h2>Comparison with production</h2>{compare}"
        f"<h2>F1 per class</h2><table>{class_rows}</table>{pictures}</body></html>"
    )


def evaluate_model(
    prepared_dir: Path,
    model_dir: Path,
    report_path: Path,
    production_model_dir: Path | None = None,
    min_improvement: float = 0.0,
) -> dict[str, Any]:
    """Score the model on the validation split; compare with production when given.

    Args:
        prepared_dir: output of ``prepare_dataset``.
        model_dir: output of ``train_model``.
        report_path: where the HTML report goes.
        production_model_dir: model folder of the model in production, scored on the same
            validation data; ``None`` when there is none yet.
        min_improvement: the candidate is promoted when its val_acc is at least the
            production model's plus this margin (may be negative to tolerate noise).

    Returns:
        metrics, the confusion matrix, classes, the promote decision and the comparison.
    """
    started = time.monotonic()
    manifest = load_manifest(prepared_dir)
    classes = manifest["classes"]
    model_classes = json.loads((Path(model_dir) / CLASSES_FILE).read_text())
    if model_classes != classes:
        raise DataError(
            f"The model was trained on classes {model_classes} but the validation data has "
            f"{classes}. Evaluate with the prepared data set the model was trained on."
        )
    images, labels = load_split(prepared_dir, "validation")
    scores = classification_scores(predict_logits(model_dir, images), labels, len(classes))
    metrics = {k: scores[k] for k in ("val_loss", "val_acc", "precision_macro", "recall_macro", "f1_macro")}

    comparison = None
    promote = True
    if production_model_dir is not None:
        production_classes = json.loads((Path(production_model_dir) / CLASSES_FILE).read_text())
        if production_classes != classes:
            raise DataError(
                f"The production model's classes {production_classes} differ from the data's {classes}; "
                "they cannot be compared on the same validation data."
            )
        production = classification_scores(predict_logits(production_model_dir, images), labels, len(classes))
        promote = scores["val_acc"] >= production["val_acc"] + min_improvement
        comparison = {
            "production_model_uri": str(production_model_dir),
            "production_val_acc": production["val_acc"],
            "production_val_loss": production["val_loss"],
            "delta_val_acc": scores["val_acc"] - production["val_acc"],
            "promote": promote,
        }
    history_path = Path(model_dir) / HISTORY_FILE
    history = json.loads(history_path.read_text()) if history_path.is_file() else {}
    pictures = {
        "Training history": plot_history(history),
        "Predictions (mistakes first)": plot_predictions(images, labels, scores["predictions"], classes),
        "Confusion matrix": plot_confusion(scores["confusion_matrix"], classes),
    }
    Path(report_path).write_text(
        render_report(metrics, classes, history, pictures, comparison, scores["per_class_f1"])
    )
    log.info(
        "Evaluated on %d validation images in %.1f s: %s; promote=%s",
        len(labels),
        time.monotonic() - started,
        ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()),
        promote,
    )
    return {
        "metrics": metrics,
        "confusion_matrix": scores["confusion_matrix"].tolist(),
        "classes": classes,
        "predictions": scores["predictions"].tolist(),
        "promote": promote,
        "comparison": comparison,
    }
