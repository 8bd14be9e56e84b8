"""The figures of the training and evaluation reports, as base64 PNG (matplotlib, Agg).

Training draws its curves and evaluation its confusion matrix, its mistakes and the guard
trade-off here, so that neither step imports the other.
"""

from __future__ import annotations

import base64
import io
from typing import TYPE_CHECKING, Any

import numpy as np

from planets_mlops.guard import tradeoff

if TYPE_CHECKING:
    from planets_mlops.evaluate import GuardScores


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
    """The confusion matrix as counts and, beside it, normalised by true class: base64 PNG.

    Cells, labels and numbers grow with the figure, so ten classes stay readable at the
    page's width (numbers at 11 pt, class names at 12 pt).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    totals = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    n = len(classes)
    side = max(4.5, 0.62 * n + 2.0)
    fig, axes = plt.subplots(1, 2, figsize=(2 * side + 1.0, side))
    for ax, values, title, text in (
        (axes[0], matrix, "Counts (images)", lambda v: f"{int(v)}"),
        (axes[1], normalised, "Normalised by true class", lambda v: f"{v:.2f}"),
    ):
        top = float(values.max()) if values.size and values.max() > 0 else 1.0
        ax.imshow(values, cmap="Blues", vmin=0.0, vmax=top)
        ax.set_xticks(range(n), classes, rotation=45, ha="right", fontsize=12)
        ax.set_yticks(range(n), classes, fontsize=12)
        ax.set_xlabel("predicted", fontsize=12)
        ax.set_ylabel("true", fontsize=12)
        ax.set_title(title, fontsize=13)
        for i in range(n):
            for j in range(n):
                if values[i, j] > 0:
                    color = "white" if values[i, j] > 0.55 * top else "black"
                    ax.text(j, i, text(values[i, j]), ha="center", va="center", fontsize=11, color=color)
    fig.tight_layout()
    return _png(fig)


def plot_mistakes(
    images: np.ndarray,
    labels: np.ndarray,
    predictions: np.ndarray,
    probabilities: np.ndarray,
    classes: list[str],
    per_class: int = 4,
) -> str | None:
    """The most confident mistakes of each class, one row per true class: base64 PNG.

    Each image is captioned with what the model said and its confidence (12 pt).

    Returns:
        The picture, or None when the model made no mistake.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    for label in range(len(classes)):
        wrong = np.flatnonzero((labels == label) & (predictions != labels))
        if wrong.size:
            confidence = probabilities[wrong, predictions[wrong]]
            rows.append((label, wrong[np.argsort(-confidence)][:per_class], int(wrong.size)))
    if not rows:
        return None
    fig, axes = plt.subplots(
        len(rows), per_class + 1, figsize=(2.3 * (per_class + 1), 2.5 * len(rows)), squeeze=False
    )
    for row, (label, chosen, total) in enumerate(rows):
        axes[row][0].axis("off")
        axes[row][0].text(
            0.0, 0.5, f"{classes[label]}\n{total} wrong", fontsize=13, va="center", ha="left", weight="bold"
        )
        for column in range(per_class):
            ax = axes[row][column + 1]
            ax.axis("off")
            if column < len(chosen):
                i = chosen[column]
                ax.imshow(np.squeeze(images[i]), cmap="gray")
                ax.set_title(
                    f"said {classes[predictions[i]]}\np = {probabilities[i, predictions[i]]:.2f}", fontsize=12
                )
    fig.tight_layout()
    return _png(fig)


def plot_guard_tradeoff(scores: GuardScores) -> str:
    """Known (and benign-changed) images kept, unseen ones rejected, per threshold: base64 PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    known = tradeoff(scores.known, scores.unseen)
    ax.plot(known["threshold"], known["kept"], label="validation images kept")
    if scores.benign.size:
        ax.plot(*_curve(scores.benign, "kept"), "--", label="benign changes kept (classified right)")
    if "rejected" in known:
        ax.plot(known["threshold"], known["rejected"], ":", label="unseen-class images rejected")
    ax.axvline(scores.threshold, color="grey", lw=1)
    ax.text(scores.threshold, 0.02, f" threshold {scores.threshold:g}", color="grey")
    ax.set_xlabel("threshold on the known score")
    ax.set_ylabel("share")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title("Open-set guard: coverage and rejection by threshold")
    return _png(fig)


def _curve(scores: np.ndarray, key: str) -> tuple[list[float], list[float]]:
    curve = tradeoff(scores)
    return curve["threshold"], curve[key]
