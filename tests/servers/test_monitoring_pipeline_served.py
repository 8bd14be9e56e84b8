"""The ``monitoring`` pipeline under kfp.local on records made from real images by a real model.

The servers-tier tests of test_monitoring_pipeline (the rest: tests/pipeline/test_monitoring_pipeline.py).
"""

from __future__ import annotations

from pathlib import Path


def test_the_quickstart_step_records_served_traffic_and_finds_the_drift(monitored, tmp_path, capsys):
    # The real path: bentoml serve with records on, darkened images over HTTP, the pipeline.
    from planets_mlops.app.monitoring_demo import monitoring_step
    from planets_mlops.package import package_model

    archive = tmp_path / "planets.bento"
    package_model(monitored["model"], archive, metrics={"val_accuracy": 1.0}, data_revision="test",
                  model_uri=monitored["model"].as_uri())  # fmt: skip
    summary = monitoring_step(tmp_path, archive, monitored["model"], images=60)
    assert summary["verdict"] == "drift" and summary["records"] == 60
    assert Path(summary["report"]).read_text().lstrip().lower().startswith("<!doctype html>")
    assert "# Drift alert" in Path(summary["alert"]).read_text()
    out = capsys.readouterr().out
    assert "verdict: DRIFT (60 records" in out and summary["report"] in out
