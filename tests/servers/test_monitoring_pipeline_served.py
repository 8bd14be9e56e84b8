"""The ``monitoring`` pipeline under kfp.local on records made from real images by a real model.

The servers-tier tests of test_monitoring_pipeline (the rest: tests/pipeline/test_monitoring_pipeline.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.fixtures.data import SMALL_CLASSES, copy_subset


@pytest.fixture(scope="module")
def monitored(tmp_path_factory):
    """A model trained on 3 classes x 150 images, its reference saved beside it, and its validation images."""
    from planets_mlops.app.dev import traffic
    from planets_mlops.knobs import PrepareParams, TrainParams
    from planets_mlops.monitoring.reference import has_reference
    from planets_mlops.prepare import prepare_dataset
    from planets_mlops.prepared import load_manifest
    from planets_mlops.train import train_model

    base = tmp_path_factory.mktemp("monitored")
    raw = copy_subset(base / "raw", SMALL_CLASSES, per_class=150)
    prepare_dataset(raw, base / "prepared", PrepareParams())
    model = base / "model"
    train_model(base / "prepared", model, TrainParams(epochs=3, conv_size=8, dense_size=16, lr=0.01))
    files = load_manifest(base / "prepared")["splits"]["validation"]["files"]
    images = [(raw / name).read_bytes() for name in files]
    # train_model wrote the reference profile of these validation images beside the guard.
    assert has_reference(model)
    return {"model": model, "images": images, "runner": traffic.ModelRunner(model)}


def test_the_quickstart_step_records_served_traffic_and_finds_the_drift(monitored, tmp_path, capsys):
    # The real path: bentoml serve with records on, darkened images over HTTP, the pipeline.
    from planets_mlops.app.monitoring_demo import monitoring_step
    from planets_mlops.package import package_model

    archive = tmp_path / "planets.bento"
    package_model(monitored["model"], archive, metrics={"val_acc": 1.0}, data_revision="test",
                  model_uri=monitored["model"].as_uri())  # fmt: skip
    summary = monitoring_step(tmp_path, archive, monitored["model"], images=60)
    assert summary["verdict"] == "drift" and summary["records"] == 60
    assert Path(summary["report"]).read_text().lstrip().lower().startswith("<!doctype html>")
    assert "# Drift alert" in Path(summary["alert"]).read_text()
    out = capsys.readouterr().out
    assert "verdict: DRIFT (60 records" in out and summary["report"] in out
