"""One metric name per quantity (issue 24): what training, evaluation, the gate, the registry
and the service write is the declared set of planets_mlops.metric_names, records written by
the version before (old names) read with the current names, and docs/metrics.md lists them."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np

from planets_mlops import metric_names
from planets_mlops.app.review import to_dvc_tables, to_markdown
from planets_mlops.evaluate import Comparison, EvaluateResult, GuardScores, classification_scores
from planets_mlops.gate import decide
from planets_mlops.knobs import TrainParams
from planets_mlops.registry import steps
from planets_mlops.train import TrainResult
from tests.support.ci_cases import review

ROOT = Path(__file__).resolve().parents[2]
KERAS_HISTORY = {
    "loss": [1.2, 0.9],
    "accuracy": [0.5, 0.75],
    "val_loss": [1.5, 1.25],
    "val_accuracy": [0.25, 0.5],
}
# What the version before one name per quantity wrote (registered models and bentos keep it).
OLD_EVALUATION_METRICS = {
    "val_acc": 0.9,
    "val_loss": 0.3,
    "f1_macro": 0.89,
    "production_val_acc": 0.85,
    "delta_val_acc": 0.05,
    "gate_candidate_acc": 0.9,
    "gate_production_acc": 0.85,
    "gate_delta_acc": 0.05,
    "gate_delta_low": 0.01,
    "history.loss": 0.9,
    "history.accuracy": 0.75,
    "history.val_accuracy": 0.5,
}
OLD_MODEL_METADATA = {
    "framework": "tensorflow 2.x",
    "final_loss": 0.5,
    "final_accuracy": 0.75,
    "final_val_loss": 1.25,
    "final_val_accuracy": 0.5,
}
OLD_STATS = {
    "images": 40,
    "production_acc": 0.85,
    "candidate_acc": 0.9,
    "delta": 0.05,
    "interval": [0.01, 0.09],
}


def _written() -> dict[str, set[str]]:
    """Every metric name each writer writes, on records that hold every figure there is."""
    train = TrainResult(
        params=TrainParams(epochs=2),
        classes=["Earth", "Moon", "Titan"],
        train_images=8,
        validation_images=6,
        history=KERAS_HISTORY,
        train_seconds=1.5,
        parameters=1234,
        framework="tensorflow 2.x",
    )
    # Titan is a class only the candidate knows: the gate reports its recall.
    labels = np.array([0, 0, 1, 1, 2, 2])
    logits = np.eye(3)[[0, 1, 1, 1, 2, 0]] * 4.0
    scores = classification_scores(logits, labels, 3)
    verdict = decide(
        labels, scores["predictions"], np.array([0, 0, 1, 0, 1, 0]), train.classes, ["Earth", "Moon"]
    )
    guard = GuardScores(0.5, np.array([0.9, 0.1]), np.array([0.8]), np.array([0.2])).figures()
    evaluation = EvaluateResult(
        metrics={name: scores[name] for name in metric_names.CLASSIFICATION},
        classes=train.classes,
        confusion_matrix=scores["confusion_matrix"].tolist(),
        predictions=scores["predictions"].tolist(),
        promote=verdict.promote,
        comparison=Comparison("gs://models/prod", 0.5, 1.0, 0.1, verdict.promote, verdict),
        guard=guard,
    ).metadata()
    return {
        "train-model metrics": set(train.metrics()),
        "model metadata": set(train.metadata()) & set(train.metrics()),
        "evaluate-model metrics (MLflow, bento, /metadata)": set(evaluation),
        "registration gate": set(steps.GATE_KEYS),
        "MLflow per-epoch series": set(metric_names.history_series(train.history)),
    }


def test_every_name_written_is_declared_and_every_declared_name_is_written():
    written = _written()
    every = set().union(*written.values())
    stray = {
        where: sorted(n for n in names if not metric_names.is_declared(n)) for where, names in written.items()
    }
    assert all(not names for names in stray.values()), stray
    families = {n for n in every if n.startswith(metric_names.PREFIXES)}
    assert families == {"new_class_recall_Titan"}
    assert every - families == set(metric_names.DECLARED)
    assert written["model metadata"] == set(metric_names.TRAINING)


def test_declared_names_are_unique_and_no_old_name_is_current():
    assert len(metric_names.DECLARED) == len(set(metric_names.DECLARED))
    assert set(metric_names.OLD_NAMES) & set(metric_names.DECLARED) == set()
    assert set(metric_names.OLD_NAMES.values()) <= set(metric_names.DECLARED)
    assert metric_names.current_name("val_accuracy") == "val_accuracy"


def test_an_old_record_reads_with_the_current_names():
    assert metric_names.current(OLD_EVALUATION_METRICS) == {
        "val_accuracy": 0.9,
        "val_loss": 0.3,
        "f1_macro": 0.89,
        "production_val_accuracy": 0.85,
        "delta_val_accuracy": 0.05,
        "gate_candidate_val_accuracy": 0.9,
        "gate_production_val_accuracy": 0.85,
        "gate_delta_val_accuracy": 0.05,
        "gate_delta_low": 0.01,
        "history.train_loss": 0.9,
        "history.train_accuracy": 0.75,
        "history.val_accuracy": 0.5,
    }
    assert metric_names.current(OLD_MODEL_METADATA) == {
        "framework": "tensorflow 2.x",
        "train_loss": 0.5,
        "train_accuracy": 0.75,
        "val_loss": 1.25,
        "val_accuracy": 0.5,
    }
    # A registered version's tags and a bento's labels carry the name behind a prefix.
    tags = {"planets.val_acc": "0.9000", "planets.kfp_run_id": "r", "val_acc": "kept"}
    assert metric_names.current(tags, prefix="planets.") == {
        "planets.val_accuracy": "0.9000",
        "planets.kfp_run_id": "r",
        "val_acc": "kept",
    }
    assert metric_names.current({"metric_val_acc": "0.9"}, prefix="metric_") == {"metric_val_accuracy": "0.9"}
    gate = metric_names.current_gate_record(
        {"promote": True, "overall": OLD_STATS, "per_class": {"Earth": OLD_STATS}, "delta_val_acc": 0.05}
    )
    current_stats = {
        "images": 40,
        "production_val_accuracy": 0.85,
        "candidate_val_accuracy": 0.9,
        "delta_val_accuracy": 0.05,
        "interval": [0.01, 0.09],
    }
    assert gate == {
        "promote": True,
        "overall": current_stats,
        "per_class": {"Earth": current_stats},
        "delta_val_accuracy": 0.05,
    }
    # A record holding both names (written twice) keeps the current one.
    assert metric_names.current({"val_acc": 0.1, "val_accuracy": 0.2}) == {"val_accuracy": 0.2}
    assert metric_names.current({"val_accuracy": 0.2, "val_acc": 0.1}) == {"val_accuracy": 0.2}


def _as_old(new: dict) -> dict:
    back = {current: old for old, current in metric_names.OLD_NAMES.items() if not old.startswith("final_")}
    return {back.get(key, key): value for key, value in new.items()}


def test_the_pull_request_comment_of_an_old_record_matches_the_current_one():
    """The comment and the dvc tables read a version registered before the rename (production,
    typically) as they read a current one: the same numbers, under the current names."""
    now = review("refuse")
    old_stats = {v: k for k, v in metric_names.OLD_STATS_NAMES.items()}
    old_gate = dict(now.gate)
    old_gate["overall"] = {old_stats.get(k, k): v for k, v in now.gate["overall"].items()}
    old_gate["per_class"] = {
        name: {old_stats.get(k, k): v for k, v in stats.items()}
        for name, stats in now.gate["per_class"].items()
    }
    old = dataclasses.replace(
        now, gate=old_gate, metrics=_as_old(now.metrics), production_metrics=_as_old(now.production_metrics)
    )
    assert old.metrics != now.metrics and "candidate_acc" in old.gate["overall"]
    read = dataclasses.replace(
        old,
        gate=metric_names.current_gate_record(old.gate),
        metrics=metric_names.current(old.metrics),
        production_metrics=metric_names.current(old.production_metrics),
    )
    assert to_markdown(read) == to_markdown(now)
    assert to_dvc_tables(read) == to_dvc_tables(now)


def test_the_metrics_page_lists_every_declared_name():
    page = (ROOT / "docs" / "metrics.md").read_text()
    listed = re.findall(r"^\| `([^`]+)` \|", page, flags=re.MULTILINE)
    assert len(listed) == len(set(listed))
    assert set(listed) == set(metric_names.DECLARED) | {f"{metric_names.NEW_CLASS_RECALL_PREFIX}<class>"}


def test_no_writer_or_reader_spells_an_old_name():
    """Old names live in planets_mlops/metric_names.py only (readers map them there)."""
    old = "|".join(map(re.escape, metric_names.OLD_NAMES))
    pattern = re.compile(rf"""["'](?:{old})["']""")
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for folder in ("planets_mlops", "components", "pipelines", "benchmarks")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if path.name != "metric_names.py"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert found == []
