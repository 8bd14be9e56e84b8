"""A model registered before one name per quantity (issue 24), read by today's code from a real
``mlflow server``: its review, ``models list``, and a new candidate's comparison with it (the
pull request's dvc tables) use the current names, and what today's registration logs is the
declared set (planets_mlops.metric_names)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from planets_mlops import metric_names
from planets_mlops.app import review
from planets_mlops.app.cli import models
from planets_mlops.gate import decide
from planets_mlops.knobs import RegistryParams
from planets_mlops.registry import registry as reg
from planets_mlops.registry import steps, tracking

CLASSES = ["Earth", "Moon"]
# What the version before one name per quantity logged (evaluate-model's metrics, as they were).
OLD_METRICS = {
    "val_acc": 0.925,
    "val_loss": 0.31,
    "f1_macro": 0.92,
    "guard_coverage": 0.95,
    "gate_promote": 1.0,
    "gate_candidate_acc": 0.925,
    "gate_production_acc": 0.85,
    "gate_delta_acc": 0.075,
}
OLD_STATS = {
    "images": 40,
    "production_acc": 0.85,
    "candidate_acc": 0.925,
    "delta": 0.075,
    "interval": [0.0, 0.15],
    "wins": 4,
    "losses": 1,
    "p_value": 0.375,
    "worse": False,
}
OLD_GATE = {
    "promote": True,
    "reasons": ["Not worse than production."],
    "confidence": 0.95,
    "shared_classes": CLASSES,
    "overall": OLD_STATS,
    "per_class": {"Earth": OLD_STATS},
    "new_classes": [],
    "forgotten_classes": [],
    "production_version": "",
    "val_acc": 0.925,
    "production_val_acc": 0.85,
    "delta_val_acc": 0.075,
}


def _model_folder(path: Path, history: dict | None = None) -> Path:
    path.mkdir(parents=True)
    (path / "model.onnx").write_bytes(f"onnx bytes of {path.name}".encode())
    (path / "classes.json").write_text(json.dumps(CLASSES))
    (path / "preprocess.json").write_text("{}")
    if history:
        (path / "history.json").write_text(json.dumps(history))
    return path


def _old_registration(client, model: str, tmp_path: Path) -> str:
    """Version 1 as the previous register-model wrote it (old metric names, gate record and tag)."""
    from mlflow.entities import Metric

    run = tracking.task_run(client, f"exp-{model}", "kfp-old", "register-model", {})
    now = int(time.time() * 1000)
    points = [Metric(key, value, now, 0) for key, value in OLD_METRICS.items()]
    points += [Metric("history.loss", value, now, epoch) for epoch, value in enumerate([1.1, 0.6])]
    client.log_batch(run.run_id, metrics=points)
    client.log_dict(run.run_id, OLD_GATE, steps.GATE_FILE)
    client.log_dict(run.run_id, {"classes": CLASSES, "matrix": [[19, 1], [2, 18]]}, review.CONFUSION_FILE)
    client.log_artifacts(run.run_id, str(_model_folder(tmp_path / "old-model")), "model")
    version = reg.register_version(
        client,
        model,
        run.run_id,
        {"planets.kfp_run_id": "kfp-old", "planets.val_acc": "0.9250", "planets.data_commit": "abc123"},
        description="training run kfp-old: val_acc 0.9250",
    )
    client.update_run(run.run_id, status="FINISHED")
    return version


def test_an_old_registration_reads_with_the_current_names(mlflow_client, model_name, tmp_path):
    version = _old_registration(mlflow_client, model_name, tmp_path)
    read = review.collect(mlflow_client, model_name, "kfp-old")
    assert read.metrics[metric_names.VAL_ACCURACY] == pytest.approx(0.925)
    assert read.metrics[metric_names.GATE_CANDIDATE_VAL_ACCURACY] == pytest.approx(0.925)
    assert not set(read.metrics) & set(metric_names.OLD_NAMES)
    assert read.metrics["history.train_loss"] == pytest.approx(0.6)
    assert read.gate["overall"][metric_names.STATS_CANDIDATE] == 0.925
    assert read.gate[metric_names.PRODUCTION_VAL_ACCURACY] == 0.85
    comment = review.to_markdown(read, "markdown")
    assert "| accuracy | 0.8500 | 0.9250 | +0.0750 | [+0.0000, +0.1500] | 4 | 1 | 0.375 |" in comment
    assert "| Earth | 40 | 0.8500 | 0.9250 | +0.0750 |" in comment
    (info,) = reg.list_versions(mlflow_client, model_name)
    assert info["version"] == version
    assert models._row(info)[3] == "0.9250"
    assert models.HEADER[3] == "VAL_ACCURACY"


def test_a_new_candidate_compares_with_an_old_production_under_one_name(mlflow_client, model_name, tmp_path):
    old = _old_registration(mlflow_client, model_name, tmp_path)
    reg.move_alias(mlflow_client, model_name, reg.PRODUCTION, old, expected=None, why="registered before")
    labels = [0] * 20 + [1] * 20
    production = [0] * 19 + [1] + [1] * 18 + [0] * 2
    candidate = [0] * 15 + [1] * 5 + [1] * 14 + [0] * 6
    verdict = decide(labels, candidate, production, CLASSES, CLASSES)
    accuracy = sum(c == t for c, t in zip(candidate, labels, strict=True)) / len(labels)
    history = {
        "loss": [1.0, 0.7],
        "accuracy": [0.6, 0.7],
        "val_loss": [1.1, 0.8],
        "val_accuracy": [0.6, 0.725],
    }
    registration = steps.register_trained_model(
        RegistryParams(tracking=True, model_name=model_name, experiment=f"exp-{model_name}"),
        kfp_run_id="kfp-new",
        task_name="register-model",
        pipeline="training",
        run_params={},
        metrics={
            metric_names.VAL_ACCURACY: accuracy,
            metric_names.VAL_LOSS: 0.6,
            metric_names.PRODUCTION_VAL_ACCURACY: 0.925,
            metric_names.DELTA_VAL_ACCURACY: accuracy - 0.925,
            **verdict.metadata(),
        },
        confusion={},
        model_dir=_model_folder(tmp_path / "new-model", history),
        files={},
        source={"commit": "def456"},
        prepared={},
        promote=verdict.promote,
        images={},
        code_revision="0.1.0-test",
        verdict={"gate": verdict.summary(), "production_version": old},
    )
    assert registration.version == "2" and not verdict.promote
    logged = set(mlflow_client.get_run(registration.run.run_id).data.metrics)
    assert {name for name in logged if not metric_names.is_declared(name)} == set()
    assert {name for name in logged if name.startswith(metric_names.HISTORY_PREFIX)} == set(
        metric_names.HISTORY
    )
    tags = reg.version_info(mlflow_client, model_name, "2")["tags"]
    assert tags[steps.VAL_ACCURACY_TAG] == "0.7250" and "planets.val_acc" not in tags

    read = review.collect(mlflow_client, model_name, "kfp-new")
    assert read.production_metrics[metric_names.VAL_ACCURACY] == pytest.approx(0.925)
    tables = review.to_dvc_tables(read)
    assert "| evaluation | val_accuracy | 0.9250 | 0.7250 | -0.2000 |" in tables
    assert "| evaluation | f1_macro | 0.9200 | - | - |" in tables
    assert "val_acc " not in tables and "| val_acc |" not in tables
