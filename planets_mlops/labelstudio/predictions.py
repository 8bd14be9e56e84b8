"""Pre-label the unlabelled tasks of a project with the current model.

Each prediction carries the model's top class in the project's Choices format, a
``score`` that marks its uncertainty, and a ``model_version``. The score is
:func:`planets_mlops.inbox.certainty`: ``1 - uncertainty / 2``, where an image the model's
open-set guard does not recognise scores below 0.5 (the less known, the lower) and any
other ``0.5 + margin / 2`` (margin: top minus second class probability). Sorting the Data
Manager by prediction score, ascending, shows labellers the hardest images first.
Pushing again first deletes that model version's predictions, so a re-run replaces them
instead of piling up copies.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from planets_mlops.errors import DataError, InvalidParameterError
from planets_mlops.labelstudio import labels as rules
from planets_mlops.labelstudio.client import ImageFetchError, LabelStudioClient, choices_result
from planets_mlops.model_folder import model_scores, read_classes_and_config

log = logging.getLogger(__name__)


def build_predictions(
    task_ids: Sequence[int],
    logits: np.ndarray,
    classes: Sequence[str],
    model_version: str,
    from_name: str = rules.FROM_NAME,
    to_name: str = rules.TO_NAME,
    known_scores: np.ndarray | None = None,
    threshold: float | None = None,
) -> list[dict[str, Any]]:
    """Label Studio prediction objects for ``logits`` (one row per task).

    Args:
        task_ids: Task ids, one per row of ``logits``.
        logits: Model outputs, shape ``(tasks, classes)``.
        classes: Class names in model output order.
        model_version: Label Studio model version of the predictions.
        from_name: Name of the config's Choices tag.
        to_name: Name of the config's Image tag.
        known_scores: The open-set guard's score per row, when the model has a guard.
        threshold: The guard's threshold (with ``known_scores``).

    Returns:
        One prediction per task: the closest class, the certainty as ``score`` (see the
        module docstring), the model version.

    Raises:
        ValueError: ``task_ids`` and ``logits`` differ in length.
    """
    if len(task_ids) != len(logits):
        raise ValueError(f"{len(task_ids)} task ids for {len(logits)} logit rows")
    from planets_mlops.inbox import certainty
    from planets_mlops.model_folder import answers

    if not len(logits):
        return []
    predictions = []
    for task_id, answer in zip(task_ids, answers(logits, classes, known_scores, threshold)):
        predictions.append(
            {
                "task": int(task_id),
                "model_version": model_version,
                "score": round(certainty(answer), 6),
                "result": [choices_result([answer["closest_class"]], from_name, to_name)],
            }
        )
    return predictions


def is_unlabelled(record: rules.TaskRecord) -> bool:
    """No annotation that chose something (skipped tasks still get predictions)."""
    return not any(v.choices and not v.cancelled for v in record.votes)


@dataclass
class PushResult:
    """What a prediction push did, for the step's metadata and log."""

    project_id: int
    model_version: str
    predicted: int
    replaced: int
    skipped: dict[str, int] = field(default_factory=dict)
    low_confidence: int = 0
    mean_score: float = 0.0
    seconds: float = 0.0

    def metadata(self) -> dict[str, Any]:
        """Flat metadata for the push step's output artifact.

        Returns:
            Project id, model version, counts of predicted tasks, replaced predictions,
            skipped tasks by reason and low-confidence tasks, and the mean score (4 decimals).
        """
        return {
            "label_studio_project_id": self.project_id,
            "model_version": self.model_version,
            "predicted_tasks": self.predicted,
            "replaced_predictions": self.replaced,
            "skipped": self.skipped,
            "low_confidence_tasks": self.low_confidence,
            "mean_score": round(self.mean_score, 4),
        }


def push_predictions(
    client: LabelStudioClient,
    project: str | int,
    model_dir: Path,
    model_version: str,
    low_confidence: float = 0.5,
) -> PushResult:
    """Predict every unlabelled task of ``project`` and replace ``model_version``'s predictions.

    Raises:
        InvalidParameterError: empty ``model_version``; the model's classes are not all
            choices of the project.
        DataError: the model folder lacks ``classes.json`` / ``preprocess.json``.
        LabelStudioError: server, token or project problems.
    """
    from planets_mlops.preprocess import preprocess_image

    started = time.monotonic()
    if not model_version.strip():
        raise InvalidParameterError(
            "model_version",
            model_version,
            "a non-empty name",
            "Use e.g. the training run id or the model's commit.",
        )
    model_dir = Path(model_dir)
    classes, config = read_classes_and_config(model_dir)
    proj = client.find_project(project)
    cfg = rules.parse_label_config(proj.label_config or "")
    missing = sorted(set(classes) - set(cfg.choices))
    if missing:
        raise InvalidParameterError(
            "project",
            proj.title,
            f"a project whose Choices include the model's classes (missing {missing})",
            "Add the classes to the project's labelling config or pick the right project.",
        )
    records = rules.parse_export(
        client.export_tasks(proj.id), image_key=cfg.image_key, from_name=cfg.from_name
    )
    skipped: dict[str, int] = {}
    task_ids: list[int] = []
    tensors: list[np.ndarray] = []
    for record in records:
        if record.problem or not is_unlabelled(record):
            continue
        try:
            tensors.append(preprocess_image(client.fetch_image(record.image), config))
        except ImageFetchError as exc:
            log.warning("No prediction for task %s: %s", record.task_id, exc)
            skipped[rules.IMAGE_MISSING] = skipped.get(rules.IMAGE_MISSING, 0) + 1
            continue
        except DataError as exc:
            log.warning("No prediction for task %s: %s", record.task_id, exc)
            skipped[rules.IMAGE_UNDECODABLE] = skipped.get(rules.IMAGE_UNDECODABLE, 0) + 1
            continue
        task_ids.append(int(record.task_id or 0))
    known_scores, threshold = None, None
    if tensors:
        logits, known_scores, threshold = model_scores(model_dir, np.stack(tensors))
    else:
        logits = np.zeros((0, len(classes)), np.float32)
    predictions = build_predictions(
        task_ids, logits, classes, model_version, cfg.from_name, cfg.to_name, known_scores, threshold
    )
    # Replace, not pile up: drop this version's old predictions first (labelled tasks too).
    replaced = client.delete_model_version(proj.id, model_version)
    client.import_predictions(proj.id, predictions)
    scores = [p["score"] for p in predictions]
    result = PushResult(
        project_id=int(proj.id),
        model_version=model_version,
        predicted=len(predictions),
        replaced=replaced,
        skipped=skipped,
        low_confidence=sum(s < low_confidence for s in scores),
        mean_score=float(np.mean(scores)) if scores else 0.0,
        seconds=time.monotonic() - started,
    )
    log.info(
        "Pushed %d predictions (model_version %r, replaced %d, %d below %.2f, skipped %s) to project %r in %.1f s",  # noqa: E501
        result.predicted,
        model_version,
        replaced,
        result.low_confidence,
        low_confidence,
        skipped,
        proj.title,
        result.seconds,
    )
    return result
