"""The name of every metric the suite writes, declared once, and the names older versions wrote.

Writers (training, evaluation and the gate, the registry, packaging) take the names from
here; readers of records an older version may have written (a registered model's MLflow
run and tags, its gate record, a bento's metadata served at ``/metadata``) pass them
through :func:`current`, which renames the old names (:data:`OLD_NAMES`), so one quantity
has one name everywhere a person looks: the Kubeflow UI, MLflow, ``/metadata`` and the pull
request's comment. docs/metrics.md describes each (a test keeps it in step with
:data:`DECLARED`).

The split a figure is measured on is in its name where the suite has it on more than one
(``train_accuracy`` / ``val_accuracy``); a record that holds two models (the evaluation
against production) prefixes the other model's (``production_val_accuracy``). Keras'
per-epoch history keeps its own keys (``loss``, ``accuracy``, ``val_loss``,
``val_accuracy`` in ``history.json``); MLflow gets that series under
``history.<name>`` (:func:`history_series`).

Stdlib only: the serving image imports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Training (train-model's metrics and the model's metadata): the last epoch, Keras.
TRAIN_LOSS = "train_loss"
TRAIN_ACCURACY = "train_accuracy"
# Training and evaluation: the model on the validation split.
VAL_LOSS = "val_loss"
VAL_ACCURACY = "val_accuracy"
PRECISION_MACRO = "precision_macro"
RECALL_MACRO = "recall_macro"
F1_MACRO = "f1_macro"
# The open-set guard on the validation split (and on unseen-class images).
GUARD_THRESHOLD = "guard_threshold"
GUARD_COVERAGE = "guard_coverage"
GUARD_BENIGN_COVERAGE = "guard_benign_coverage"
GUARD_UNSEEN_REJECTED = "guard_unseen_rejected"
# The evaluation against production, on the same validation images.
PRODUCTION_VAL_ACCURACY = "production_val_accuracy"
DELTA_VAL_ACCURACY = "delta_val_accuracy"
# The gate: both models paired on the validation images of the classes both know.
GATE_PROMOTE = "gate_promote"
GATE_IMAGES = "gate_images"
GATE_CANDIDATE_VAL_ACCURACY = "gate_candidate_val_accuracy"
GATE_PRODUCTION_VAL_ACCURACY = "gate_production_val_accuracy"
GATE_DELTA_VAL_ACCURACY = "gate_delta_val_accuracy"
GATE_DELTA_LOW = "gate_delta_low"
GATE_DELTA_HIGH = "gate_delta_high"
GATE_MCNEMAR_P = "gate_mcnemar_p"
GATE_WINS = "gate_wins"
GATE_LOSSES = "gate_losses"
GATE_OVERALL_WORSE = "gate_overall_worse"
GATE_CLASSES_WORSE = "gate_classes_worse"
# One per class only the candidate knows: its recall on that class's validation images.
NEW_CLASS_RECALL_PREFIX = "new_class_recall_"
# MLflow's per-epoch series of a training metric: ``history.val_accuracy`` at step = epoch.
HISTORY_PREFIX = "history."

TRAINING = (TRAIN_LOSS, TRAIN_ACCURACY, VAL_LOSS, VAL_ACCURACY)
"""What train-model's ``metrics`` output and the model's metadata hold (the last epoch)."""
CLASSIFICATION = (VAL_LOSS, VAL_ACCURACY, PRECISION_MACRO, RECALL_MACRO, F1_MACRO)
"""The evaluation's scores of the candidate."""
GUARD = (GUARD_THRESHOLD, GUARD_COVERAGE, GUARD_BENIGN_COVERAGE, GUARD_UNSEEN_REJECTED)
COMPARISON = (PRODUCTION_VAL_ACCURACY, DELTA_VAL_ACCURACY)
GATE = (
    GATE_PROMOTE,
    GATE_IMAGES,
    GATE_CANDIDATE_VAL_ACCURACY,
    GATE_PRODUCTION_VAL_ACCURACY,
    GATE_DELTA_VAL_ACCURACY,
    GATE_DELTA_LOW,
    GATE_DELTA_HIGH,
    GATE_MCNEMAR_P,
    GATE_WINS,
    GATE_LOSSES,
    GATE_OVERALL_WORSE,
    GATE_CLASSES_WORSE,
)
REGISTERED = (VAL_ACCURACY, VAL_LOSS, F1_MACRO, PRODUCTION_VAL_ACCURACY, DELTA_VAL_ACCURACY)
"""The figures a registration and its release record keep (with ``promote``)."""
HISTORY = tuple(f"{HISTORY_PREFIX}{name}" for name in TRAINING)
"""MLflow's per-epoch series (:func:`history_series`)."""

DECLARED = tuple(dict.fromkeys((*TRAINING, *CLASSIFICATION, *GUARD, *COMPARISON, *GATE, *HISTORY)))
"""Every metric name the suite writes, besides ``new_class_recall_<class>``."""
PREFIXES = (NEW_CLASS_RECALL_PREFIX,)
"""Families of names: one per class (the class's name follows the prefix)."""

OLD_NAMES = {
    # evaluation and the registry before one name per quantity
    "val_acc": VAL_ACCURACY,
    "production_val_acc": PRODUCTION_VAL_ACCURACY,
    "delta_val_acc": DELTA_VAL_ACCURACY,
    "gate_candidate_acc": GATE_CANDIDATE_VAL_ACCURACY,
    "gate_production_acc": GATE_PRODUCTION_VAL_ACCURACY,
    "gate_delta_acc": GATE_DELTA_VAL_ACCURACY,
    # the model artifact's metadata (the last epoch)
    "final_loss": TRAIN_LOSS,
    "final_accuracy": TRAIN_ACCURACY,
    "final_val_loss": VAL_LOSS,
    "final_val_accuracy": VAL_ACCURACY,
    # MLflow's per-epoch series under Keras' own keys
    "history.loss": f"{HISTORY_PREFIX}{TRAIN_LOSS}",
    "history.accuracy": f"{HISTORY_PREFIX}{TRAIN_ACCURACY}",
}
"""Old name -> current name, for reading what an older version wrote."""

# The gate record's per-set figures (``overall`` and each ``per_class`` entry of gate.json).
STATS_CANDIDATE = "candidate_val_accuracy"
STATS_PRODUCTION = "production_val_accuracy"
STATS_DELTA = "delta_val_accuracy"
OLD_STATS_NAMES = {"candidate_acc": STATS_CANDIDATE, "production_acc": STATS_PRODUCTION, "delta": STATS_DELTA}
"""Old name -> current name inside the gate record's ``overall`` and ``per_class`` entries."""


def is_declared(name: str) -> bool:
    """Whether ``name`` is a declared metric name (or one of a declared family)."""
    return name in DECLARED or any(name.startswith(prefix) and name != prefix for prefix in PREFIXES)


def current_name(name: str, prefix: str = "") -> str:
    """The current name of ``name`` (itself when it is not an old one).

    Args:
        name: A metric name, possibly written by an older version.
        prefix: A prefix the name carries in its record (``planets.`` on a registered
            version's tags, ``metric_`` on a bento's labels), kept as it is.
    """
    if prefix and not name.startswith(prefix):
        return name
    bare = name[len(prefix) :]
    return prefix + OLD_NAMES.get(bare, bare)


def current(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``values`` with every old name renamed (:data:`OLD_NAMES`); a current name wins a clash.

    Args:
        values: Metrics (or tags, labels) as read back from a record.
        prefix: See :func:`current_name`.
    """
    renamed = {current_name(key, prefix): value for key, value in values.items() if key not in OLD_NAMES}
    for key, value in values.items():
        renamed.setdefault(current_name(key, prefix), value)
    return renamed


def current_stats(stats: Mapping[str, Any]) -> dict[str, Any]:
    """One ``overall`` or ``per_class`` entry of a gate record with the current names."""
    out = {OLD_STATS_NAMES.get(key, key): value for key, value in stats.items() if key not in OLD_STATS_NAMES}
    for key, value in stats.items():
        out.setdefault(OLD_STATS_NAMES.get(key, key), value)
    return out


def current_gate_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """A gate record (``evaluation/gate.json``, a registration's ``gate``) with the current names."""
    out = current(record)
    if isinstance(out.get("overall"), Mapping):
        out["overall"] = current_stats(out["overall"])
    if isinstance(out.get("per_class"), Mapping):
        out["per_class"] = {
            name: current_stats(stats) if isinstance(stats, Mapping) else stats
            for name, stats in out["per_class"].items()
        }
    return out


def training_name(keras_key: str) -> str:
    """The declared name of a Keras history key: ``val_*`` as it is, ``loss`` -> ``train_loss``."""
    return keras_key if keras_key.startswith("val_") else f"train_{keras_key}"


def training_names(keras_metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Keras' metric values (``loss``, ``accuracy``, ``val_loss``...) under the declared names."""
    return {training_name(key): value for key, value in keras_metrics.items()}


def history_series(history: Mapping[str, Any]) -> dict[str, Any]:
    """Keras' history keyed by the names MLflow logs it under (``history.train_loss``...)."""
    return {f"{HISTORY_PREFIX}{training_name(key)}": series for key, series in history.items()}
