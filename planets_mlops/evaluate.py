"""Score a trained model on the validation split and write a report a person can read.

Predictions come from ONNX Runtime on ``model.onnx``, the exact artifact that is packaged
and served, so the evaluated numbers are the served model's numbers.
"""

from __future__ import annotations

import html
import logging
import math
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from planets_mlops.augment import benign_changes
from planets_mlops.errors import DataError
from planets_mlops.gate import Verdict, decide
from planets_mlops.guard import has_guard, load_guard, rejection_rate
from planets_mlops.knobs import EvaluateParams, RegistryParams
from planets_mlops.metric_names import (
    CLASSIFICATION,
    DELTA_VAL_ACCURACY,
    F1_MACRO,
    GUARD_BENIGN_COVERAGE,
    GUARD_COVERAGE,
    GUARD_THRESHOLD,
    GUARD_UNSEEN_REJECTED,
    PRECISION_MACRO,
    PRODUCTION_VAL_ACCURACY,
    RECALL_MACRO,
    VAL_ACCURACY,
    VAL_LOSS,
)
from planets_mlops.model_folder import (
    CLASSES_FILE,
    PREPROCESS_FILE,
    predict_logits,
    predict_outputs,
    read_classes,
    read_config,
    read_history,
    softmax,
)
from planets_mlops.plots import plot_confusion, plot_guard_tradeoff, plot_history, plot_mistakes
from planets_mlops.prepared import load_manifest, load_raw_split, load_split
from planets_mlops.preprocess import PreprocessConfig

log = logging.getLogger(__name__)

METRIC_NAMES = CLASSIFICATION


@dataclass(frozen=True)
class Comparison:
    """The candidate against the model in production, on the same validation data.

    Attributes:
        production_model_uri: Model folder of the production model.
        production_val_accuracy: Its accuracy on the same validation images (an image of a class
            it does not know counts as wrong).
        production_val_loss: Its validation loss on the images of classes it knows.
        delta_val_accuracy: Candidate minus production validation accuracy.
        promote: The gate's decision (``verdict.promote``).
        verdict: The paired comparison behind the decision (:mod:`planets_mlops.gate`).
    """

    production_model_uri: str
    production_val_accuracy: float
    production_val_loss: float
    delta_val_accuracy: float
    promote: bool
    verdict: Verdict | None = None


@dataclass(frozen=True)
class EvaluateResult:
    """Scores of a model on the validation split and the promotion decision.

    Attributes:
        metrics: ``val_loss``, ``val_accuracy`` and macro precision, recall and F1.
        classes: Class names; the index is the label.
        confusion_matrix: Counts, rows are true classes and columns predicted ones.
        predictions: The predicted class index of each validation image.
        promote: Whether to promote the model (always when there is no production model).
        comparison: The comparison with production; ``None`` when none was given.
        guard: The open-set guard's figures (see :meth:`GuardScores.figures`); ``None`` for a
            model folder without a guard.
    """

    metrics: dict[str, float]
    classes: list[str]
    confusion_matrix: list[list[int]]
    predictions: list[int]
    promote: bool
    comparison: Comparison | None = None
    guard: dict[str, float] | None = None

    def metadata(self) -> dict[str, float]:
        """Values for the KFP Metrics output: the metrics, the guard's figures, the comparison."""
        values = dict(self.metrics)
        values.update(self.guard or {})
        if self.comparison:
            values[PRODUCTION_VAL_ACCURACY] = self.comparison.production_val_accuracy
            values[DELTA_VAL_ACCURACY] = self.comparison.delta_val_accuracy
            if self.comparison.verdict:
                values.update(self.comparison.verdict.metadata())
        return values

    def gate_summary(self) -> dict[str, Any]:
        """The gate's decision and numbers as plain JSON values (:meth:`Verdict.summary`).

        Without a production model: ``promote`` and the reason, nothing compared.
        """
        if self.comparison is None or self.comparison.verdict is None:
            return {
                "promote": self.promote,
                "reasons": ["No production model: nothing to compare with."],
                "overall": None,
                "per_class": {},
                "new_classes": [],
                "forgotten_classes": [],
            }
        return self.comparison.verdict.summary()

    def verdict_markdown(self, candidate: str = "candidate") -> str:
        """The promotion verdict as Markdown, for the KFP UI.

        Args:
            candidate: How to name the candidate model.

        Returns:
            The gate's verdict with its numbers, or a note that nothing was compared.
        """
        if self.comparison is None or self.comparison.verdict is None:
            return (
                "# Promotion gate: **PROMOTE**\n\nNo production model given: nothing to compare "
                f"with. Candidate {VAL_ACCURACY} {self.metrics[VAL_ACCURACY]:.4f} on {len(self.predictions)} "
                "validation images.\n"
            )
        return self.comparison.verdict.to_markdown(candidate, self.comparison.production_model_uri)


@dataclass(frozen=True)
class GuardScores:
    """The guard's known scores of the evaluation images, for its figures and its curve.

    Attributes:
        threshold: The score an image needs to be recognised.
        known: Scores of the validation images.
        benign: Scores of the validation images under each benign change
            (:data:`planets_mlops.augment.BENIGN`) that the model still classifies right.
        unseen: Scores of images of classes the model never saw; ``None`` when none given.
    """

    threshold: float
    known: np.ndarray
    benign: np.ndarray
    unseen: np.ndarray | None = None

    def figures(self) -> dict[str, float]:
        """The guard's figures for the metrics and the report.

        Returns:
            ``guard_threshold``, ``guard_coverage`` (share of validation images recognised),
            ``guard_benign_coverage`` (the same under benign changes, of those classified
            right) and, with unseen images, ``guard_unseen_rejected`` (share of them not
            recognised).
        """
        figures = {
            GUARD_THRESHOLD: self.threshold,
            GUARD_COVERAGE: float(np.mean(self.known >= self.threshold)) if self.known.size else 0.0,
        }
        if self.benign.size:
            figures[GUARD_BENIGN_COVERAGE] = float(np.mean(self.benign >= self.threshold))
        if self.unseen is not None and self.unseen.size:
            figures[GUARD_UNSEEN_REJECTED] = rejection_rate(self.unseen, self.threshold)
        return figures


def guard_scores(
    model_dir: Path,
    images: np.ndarray,
    labels: np.ndarray,
    known_embedding: np.ndarray | None,
    unseen_images: np.ndarray | None = None,
) -> GuardScores | None:
    """Score the validation images, benign changes of them and unseen images with the guard.

    Args:
        model_dir: A model folder; ``None`` is returned when it holds no guard.
        images: The validation images (model inputs).
        labels: Their classes.
        known_embedding: The model's embeddings of ``images``.
        unseen_images: Model inputs of images of classes the model never saw (for
            instance a class left out of training).
    """
    if not has_guard(model_dir) or known_embedding is None:
        return None
    guard = load_guard(model_dir)
    benign = []
    for changed in benign_changes(images).values():
        logits, embedding = predict_outputs(model_dir, changed)
        if embedding is not None and len(changed):
            right = logits.argmax(axis=1) == labels
            benign.append(guard.scores(embedding[right], changed[right]) if right.any() else np.zeros(0))
    unseen = None
    if unseen_images is not None and len(unseen_images):
        _, unseen_embedding = predict_outputs(model_dir, unseen_images)
        unseen = guard.scores(unseen_embedding, unseen_images)
    return GuardScores(
        guard.threshold,
        guard.scores(known_embedding, images),
        np.concatenate(benign) if benign else np.zeros(0),
        unseen,
    )


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
        VAL_LOSS: loss,
        VAL_ACCURACY: float(np.mean(predictions == labels)),
        PRECISION_MACRO: float(precision.mean()),
        RECALL_MACRO: float(recall.mean()),
        F1_MACRO: float(f1.mean()),
        "confusion_matrix": matrix,
        "predictions": predictions,
        "probabilities": probabilities,
        "per_class_f1": f1,
        "per_class_precision": precision,
        "per_class_recall": recall,
        "support": actual,
    }


def per_class_rows(
    scores: Mapping[str, Any], classes: list[str], guard_coverage: Sequence[float] | None
) -> list[dict]:
    """One row per class: precision, recall, F1, support (validation images) and guard coverage.

    Args:
        scores: From :func:`classification_scores`.
        classes: Class names, in label order.
        guard_coverage: Share of each class's validation images the guard recognises, or None.

    Returns:
        ``[{"class", "precision", "recall", "f1", "support", "guard_coverage"?}, ...]``.
    """
    rows = []
    for i, name in enumerate(classes):
        row = {
            "class": name,
            "precision": float(scores["per_class_precision"][i]),
            "recall": float(scores["per_class_recall"][i]),
            "f1": float(scores["per_class_f1"][i]),
            "support": int(scores["support"][i]),
        }
        if guard_coverage is not None:
            row["guard_coverage"] = float(guard_coverage[i])
        rows.append(row)
    return rows


REPORT_CSS = (
    "body{font-family:-apple-system,'Segoe UI','Noto Sans',Helvetica,Arial,sans-serif;font-size:15px;"
    "line-height:1.45;color:#1f2328;margin:1.2em;max-width:1200px}"
    "table{border-collapse:collapse;margin:.4em 0 1em}"
    "th,td{border:1px solid #d1d9e0;padding:3px 10px;text-align:left;white-space:nowrap}"
    "td.num{text-align:right;font-variant-numeric:tabular-nums}th{background:#f6f8fa}"
    "img{max-width:100%;height:auto;display:block}code{font-size:90%;overflow-wrap:anywhere}"
    "table.provenance td{white-space:normal;overflow-wrap:anywhere}"
)


def _provenance_table(provenance: Mapping[str, Any]) -> str:
    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in provenance.items()
        if v not in (None, "")
    )
    return f"<table class='provenance'>{rows}</table>"


def _per_class_table(per_class: Sequence[Mapping[str, Any]]) -> str:
    guard = any("guard_coverage" in row for row in per_class)
    head = "<tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th>"
    head += "<th>guard coverage</th></tr>" if guard else "</tr>"
    rows = []
    for row in per_class:
        cells = [f"<td>{html.escape(str(row['class']))}</td>"]
        cells += [f"<td class='num'>{row[k]:.3f}</td>" for k in ("precision", "recall", "f1")]
        cells.append(f"<td class='num'>{row['support']}</td>")
        if guard:
            cells.append(
                f"<td class='num'>{row['guard_coverage']:.1%}</td>"
                if "guard_coverage" in row
                else "<td></td>"
            )
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def render_report(
    metrics: dict[str, float],
    classes: list[str],
    history: dict,
    images: dict[str, str],
    comparison: Comparison | None,
    per_class_f1: np.ndarray,
    guard: dict[str, float] | None = None,
    *,
    per_class: Sequence[Mapping[str, Any]] | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> str:
    """The HTML report shown in the KFP UI.

    Args:
        metrics: Metric names and values for the summary table.
        classes: Class names, in label order.
        history: Training history (unused in the page; its plot is in ``images``).
        images: Section title -> base64 PNG.
        comparison: The comparison with production, or ``None``.
        per_class_f1: F1 of each class, in label order (shown when ``per_class`` is None).
        guard: The open-set guard's figures (:meth:`GuardScores.figures`), or ``None``.
        per_class: Rows of :func:`per_class_rows` (precision, recall, F1, support, guard
            coverage per class).
        provenance: What the report is about (model, data commit and DVC hash, run,
            parameters, image count), shown first as label -> value.

    Returns:
        A self-contained HTML page.
    """
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td class='num'>{v:.4f}</td></tr>" for k, v in metrics.items()
    )
    if per_class is None:
        per_class = [
            {"class": name, "f1": float(score)} for name, score in zip(classes, per_class_f1, strict=False)
        ]
        class_table = (
            "<table><tr><th>class</th><th>F1</th></tr>"
            + "".join(
                f"<tr><td>{html.escape(r['class'])}</td><td class='num'>{r['f1']:.3f}</td></tr>"
                for r in per_class
            )
            + "</table>"
        )
        class_title = "F1 per class"
    else:
        class_table = _per_class_table(per_class)
        class_title = "Per class"
    compare = "<p>No production model given: nothing to compare with.</p>"
    if comparison:
        named = (provenance or {}).get("production") or comparison.production_model_uri
        compare = (
            f"<p>Production model <code>{html.escape(str(named))}</code>: "
            f"{VAL_ACCURACY} {comparison.production_val_accuracy:.4f}, candidate {metrics[VAL_ACCURACY]:.4f} "
            f"(delta {comparison.delta_val_accuracy:+.4f}). <b>{'Promote' if comparison.promote else 'Keep production'}</b>.</p>"  # noqa: E501
        )
        if comparison.verdict:
            reasons = "".join(f"<li>{html.escape(r)}</li>" for r in comparison.verdict.reasons)
            low, high = comparison.verdict.overall.interval
            compare += (
                f"<p>Paired on {comparison.verdict.overall.images} images of shared classes: delta "
                f"{comparison.verdict.overall.delta:+.4f}, {round(comparison.verdict.confidence * 100)} % "
                f"interval [{low:+.4f}, {high:+.4f}], McNemar p {comparison.verdict.overall.p_value:.4g}."
                f"</p><ul>{reasons}</ul>"
            )
    guard_text = "<p>This model folder has no open-set guard.</p>"
    if guard:
        guard_text = (
            f"<p>Threshold {guard[GUARD_THRESHOLD]:.4f} on the known score (the nearest-neighbour "
            "cosine distance of the embedding, in units of its class's calibrated distance); it "
            f"recognises {guard[GUARD_COVERAGE]:.1%} of the validation images"
            + (" (per class: the table above)" if any("guard_coverage" in r for r in per_class) else "")
            + "."
        )
        if GUARD_BENIGN_COVERAGE in guard:
            guard_text += (
                f" Under benign changes (noise, blur, half contrast, 60 % exposure) it keeps "
                f"{guard[GUARD_BENIGN_COVERAGE]:.1%} of the images the model classifies right."
            )
        if GUARD_UNSEEN_REJECTED in guard:
            guard_text += f" It rejects {guard[GUARD_UNSEEN_REJECTED]:.1%} of the unseen-class images."
        guard_text += "</p>"
    pictures = "".join(
        f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' src='data:image/png;base64,{data}'/>"
        for title, data in images.items()
    )
    header = f"<h2>About</h2>{_provenance_table(provenance)}" if provenance else ""
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Evaluation</title>"
        f"<style>{REPORT_CSS}</style></head><body>"
        f"<h1>Evaluation on {len(classes)} classes</h1>{header}"
        f"<h2>Validation metrics</h2><table>{rows}</table>"
        f"<h2>{class_title}</h2>{class_table}"
        f"<h2>Comparison with production</h2>{compare}"
        f"<h2>Open-set guard</h2>{guard_text}"
        f"{pictures}</body></html>"
    )


def _check_classes(model_dir: Path, classes: list[str], message: str) -> None:
    """Refuse a model whose ``classes.json`` differs from the data's classes."""
    model_classes = read_classes(model_dir)
    if model_classes != classes:
        raise DataError(message.format(model=model_classes, data=classes))


def _production_classes(production_model_dir: Path) -> list[str]:
    path = Path(production_model_dir) / CLASSES_FILE
    try:
        classes = read_classes(production_model_dir)
    except (OSError, ValueError) as exc:
        raise DataError(
            f"Cannot read {str(path)!r} ({exc}): {str(production_model_dir)!r} is not a model folder "
            "from train_model. Pass the production model's folder as production_model_uri."
        ) from exc
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise DataError(f"{str(path)!r} is not a list of class names: {str(classes)[:200]}.")
    return classes


def _production_config(production_model_dir: Path) -> PreprocessConfig:
    """The production model's own preprocessing (its ``preprocess.json``)."""
    path = Path(production_model_dir) / PREPROCESS_FILE
    try:
        return read_config(production_model_dir)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(
            f"Cannot read the preprocessing of the production model, {str(path)!r} ({exc!r}): "
            "pass a model folder from train_model as production_model_uri."
        ) from exc


def production_inputs(production_model_dir: Path, prepared_dir: Path, images: np.ndarray) -> np.ndarray:
    """The validation images as the production model takes them: its own preprocessing.

    The data set's tensors when production preprocesses as the data set does; otherwise
    (another image size or colour mode) the same raw validation images preprocessed with
    production's ``preprocess.json``, in the same order.

    Args:
        production_model_dir: The production model's folder.
        prepared_dir: The candidate's prepared data set.
        images: The data set's validation tensors.

    Returns:
        One model input per validation image, for the production model.

    Raises:
        DataError: unreadable preprocessing, or a data set without raw validation images.
    """
    config = _production_config(production_model_dir)
    ours = PreprocessConfig.from_dict(load_manifest(prepared_dir)["preprocess"])
    if config == ours:
        return images
    log.info("Production preprocesses differently (%s, data set %s): scored on the raw images", config, ours)
    return load_raw_split(prepared_dir, "validation", config)[0]


def _compare(
    production_model_dir: Path,
    images: np.ndarray,
    labels: np.ndarray,
    classes: list[str],
    candidate: dict[str, Any],
    gate: EvaluateParams,
) -> Comparison:
    """Score the production model on the same images and let the gate decide.

    ``images`` are the production model's inputs (:func:`production_inputs`). Production
    may know fewer classes than the data (a class was added through labelling): the gate
    compares on the classes both know, and reports the new ones' recall.
    """
    production_classes = _production_classes(production_model_dir)
    logits = predict_logits(production_model_dir, images)
    if logits.shape[1:] != (len(production_classes),):
        raise DataError(
            f"The production model gives {logits.shape[1:]} outputs for {len(production_classes)} classes "
            f"in its classes.json: {str(production_model_dir)!r} is inconsistent."
        )
    predicted = logits.argmax(axis=1)
    verdict = decide(
        labels,
        candidate["predictions"],
        predicted,
        classes,
        production_classes,
        gate,
    )
    names = np.asarray(production_classes, dtype=object)
    truth = np.asarray(classes, dtype=object)[labels]
    production_acc = float(np.mean(names[predicted] == truth)) if len(labels) else 0.0
    known = np.isin(truth, production_classes)
    loss = 0.0
    if np.any(known):
        index = {name: i for i, name in enumerate(production_classes)}
        own_labels = np.array([index[name] for name in truth[known]])
        loss = classification_scores(logits[known], own_labels, len(production_classes))[VAL_LOSS]
    return Comparison(
        production_model_uri=str(production_model_dir),
        production_val_accuracy=production_acc,
        production_val_loss=loss,
        delta_val_accuracy=candidate[VAL_ACCURACY] - production_acc,
        promote=verdict.promote,
        verdict=verdict,
    )


def report_provenance(
    model_metadata: Mapping[str, Any], data_metadata: Mapping[str, Any], run: str = ""
) -> dict[str, str]:
    """The evaluation report's header: which model, data and run it is about.

    Args:
        model_metadata: The trained model artifact's metadata (``data_commit``,
            ``data_dvc_hash``, ``framework``, ``parameters``, ``train_params``...).
        data_metadata: The prepared data set's metadata (``source_commit``,
            ``source_dvc_hash``, split counts, preprocessing).
        run: The pipeline run's name, when known.

    Returns:
        Label -> value, in the order shown.
    """

    def plain(value: Any) -> Any:
        # KFP's metadata is a protobuf Struct: every number comes back a float (32 -> 32.0).
        return int(value) if isinstance(value, float) and value.is_integer() else value

    commit = model_metadata.get("data_commit") or data_metadata.get("source_commit") or ""
    about: dict[str, str] = {
        "run": run,
        "model": ", ".join(
            str(x)
            for x in (
                model_metadata.get("framework"),
                f"{plain(model_metadata['parameters']):,} weights"
                if model_metadata.get("parameters")
                else None,
                f"augment {model_metadata['augment']}" if model_metadata.get("augment") else None,
            )
            if x
        ),
        "data commit": str(commit),
        "DVC hash": str(model_metadata.get("data_dvc_hash") or data_metadata.get("source_dvc_hash") or ""),
    }
    if data_metadata.get("train_count") is not None:
        train, validation = plain(data_metadata["train_count"]), plain(data_metadata.get("validation_count"))
        about["images"] = f"{train} train, {validation} validation"
    train_params = model_metadata.get("train_params") or {}
    preprocess = data_metadata.get("preprocess") or {}
    params = {**{f"prepare_{k}": v for k, v in preprocess.items() if k != "rescale"}, **train_params}
    if params:
        about["parameters"] = ", ".join(f"{k}={plain(v)}" for k, v in sorted(params.items()))
    return about


def evaluate_model(
    prepared_dir: Path,
    model_dir: Path,
    report_path: Path,
    production_model_dir: Path | None = None,
    min_improvement: float = 0.0,
    gate: EvaluateParams | None = None,
    verdict_path: Path | None = None,
    unseen_images: np.ndarray | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> EvaluateResult:
    """Score the model on the validation split; compare with production when given.

    Args:
        prepared_dir: Output of ``prepare_dataset``.
        model_dir: Output of ``train_model``.
        report_path: Where the HTML report goes.
        production_model_dir: Model folder of the model in production, scored on the same
            validation data; ``None`` when there is none yet.
        min_improvement: Required accuracy gain over production on the images of shared
            classes (may be negative); see :func:`planets_mlops.gate.decide`.
        gate: The gate's other knobs (significance level, bootstrap); its
            ``min_improvement`` is replaced by the argument above. Defaults when None.
        verdict_path: Where the verdict goes as Markdown; not written when None.
        unseen_images: Model inputs of images of a class the model never saw; when given,
            the guard's rejection rate on them is reported (``guard_unseen_rejected``).
        provenance: What the report's header says it is about (see :func:`report_provenance`);
            the validation image count is added.

    Returns:
        Metrics, the confusion matrix, classes, predictions, the promote decision and the
        comparison.

    Raises:
        DataError: the model was trained on other classes than the data's, or the
            production model shares no class with it.
    """
    started = time.monotonic()
    manifest = load_manifest(prepared_dir)
    classes = manifest["classes"]
    _check_classes(
        model_dir,
        classes,
        "The model was trained on classes {model} but the validation data has "
        "{data}. Evaluate with the prepared data set the model was trained on.",
    )
    images, labels = load_split(prepared_dir, "validation")
    logits, embedding = predict_outputs(model_dir, images)
    scores = classification_scores(logits, labels, len(classes))
    metrics = {k: scores[k] for k in METRIC_NAMES}
    scored = guard_scores(model_dir, images, labels, embedding, unseen_images)
    guard = scored.figures() if scored else None
    comparison = None
    if production_model_dir is not None:
        params = replace(gate or EvaluateParams(), min_improvement=min_improvement)
        inputs = production_inputs(production_model_dir, prepared_dir, images)
        comparison = _compare(production_model_dir, inputs, labels, classes, scores, params)
    promote = comparison.promote if comparison else True
    non_finite = sorted(k for k, v in metrics.items() if not math.isfinite(v))
    if non_finite or not np.isfinite(logits).all():
        # A diverged model (NaN weights) still gets an accuracy from argmax: never ship it.
        promote = False
        log.error(
            "The model's outputs are not finite (%d of %d logits; metrics %s): not promoted. "
            "Retrain with a lower train_lr.",
            int((~np.isfinite(logits)).sum()),
            logits.size,
            non_finite or "finite",
        )
        if comparison is not None:
            comparison = replace(comparison, promote=False)
    history = read_history(model_dir)
    pictures = {
        "Confusion matrix": plot_confusion(scores["confusion_matrix"], classes),
        "Training history": plot_history(history),
    }
    mistakes = plot_mistakes(images, labels, scores["predictions"], scores["probabilities"], classes)
    if mistakes is not None:
        pictures["Mistakes per class (the most confident first)"] = mistakes
    coverage = None
    if scored is not None:
        pictures["Open-set guard: coverage and rejection by threshold"] = plot_guard_tradeoff(scored)
        coverage = [
            float(np.mean(scored.known[labels == c] >= scored.threshold)) if np.any(labels == c) else 0.0
            for c in range(len(classes))
        ]
    about = {**(provenance or {})}
    about.setdefault("images", f"{len(labels)} validation")
    about["images"] += f" ({len(classes)} classes)"
    Path(report_path).write_text(
        render_report(
            metrics,
            classes,
            history,
            pictures,
            comparison,
            scores["per_class_f1"],
            guard,
            per_class=per_class_rows(scores, classes, coverage),
            provenance=about,
        )
    )
    result = EvaluateResult(
        metrics=metrics,
        classes=classes,
        confusion_matrix=scores["confusion_matrix"].tolist(),
        predictions=scores["predictions"].tolist(),
        promote=promote,
        comparison=comparison,
        guard=guard,
    )
    if verdict_path is not None:
        Path(verdict_path).write_text(result.verdict_markdown(str(model_dir)))
    log.info(
        "Evaluated on %d validation images in %.1f s: %s; promote=%s",
        len(labels),
        time.monotonic() - started,
        ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()),
        promote,
    )
    return result


@dataclass(frozen=True)
class CandidateEvaluation:
    """What the ``evaluate_model`` component reports: the scores and who the opponent was.

    Attributes:
        result: The candidate's scores and the promotion decision.
        production_version: The registry version ``production`` named when it was read
            (empty when the registry was not consulted or names none); the promotion
            expects to still find it there.
        production_source: Where the opponent came from (a URI or ``models:/...``); empty
            when there was no opponent.
    """

    result: EvaluateResult
    production_version: str
    production_source: str

    def verdict_metadata(self) -> dict[str, Any]:
        """Metadata of the ``verdict`` artifact: the decision, production's version, the gate."""
        return {
            "promote": self.result.promote,
            "production_version": self.production_version,
            "production_source": self.production_source,
            "gate": self.result.gate_summary(),
        }


def evaluate_candidate(
    prepared_dir: Path,
    model_dir: Path,
    report_path: Path,
    verdict_path: Path,
    gate: EvaluateParams,
    registry: RegistryParams,
    production_model_uri: str = "",
    model_metadata: Mapping[str, Any] | None = None,
    data_metadata: Mapping[str, Any] | None = None,
    run_name: str = "",
) -> CandidateEvaluation:
    """What the ``evaluate_model`` component calls: find production, then :func:`evaluate_model`.

    The opponent is ``production_model_uri`` when given; else, with ``registry.tracking``,
    the version the ``production`` alias of ``registry.model_name`` names
    (``MLFLOW_TRACKING_URI``); else none, and the candidate is promoted.

    Args:
        prepared_dir: Output of ``prepare_dataset``.
        model_dir: Output of ``train_model``.
        report_path: Where the HTML report goes.
        verdict_path: Where the verdict goes as Markdown.
        gate: The gate's knobs.
        registry: The registry knobs (``tracking``, ``model_name``).
        production_model_uri: Model folder of the production model (a path or ``gs://``).
        model_metadata: The trained model artifact's metadata, for the report's header.
        data_metadata: The prepared data set's metadata, for the report's header.
        run_name: The pipeline run's name, for the report's header.

    Returns:
        The scores, the decision and the opponent's version and source.

    Raises:
        DataError: see :func:`evaluate_model`.
        TrackingError: the tracking server is unreachable (and ``allow_untracked`` is off).
    """
    from planets_mlops.registry.registry import production_opponent
    from planets_mlops.registry.settings import connect

    client = connect(registry, step="evaluate_model")
    opponent = production_opponent(
        client, registry.model_name, production_model_uri, Path(tempfile.mkdtemp(prefix="production-"))
    )
    result = evaluate_model(
        prepared_dir,
        model_dir,
        report_path,
        opponent.model_dir,
        gate.min_improvement,
        gate,
        verdict_path,
        provenance={
            **report_provenance(model_metadata or {}, data_metadata or {}, run_name),
            # The registry's name for the opponent, not the folder it was downloaded to.
            "production": (
                f"version {opponent.version} of {registry.model_name}"
                if opponent.version
                else opponent.source
            )
            if opponent.model_dir
            else "",
        },
    )
    return CandidateEvaluation(result, opponent.version, opponent.source if opponent.model_dir else "")
