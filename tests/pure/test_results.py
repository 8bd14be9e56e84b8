"""The typed results of prepare, train, evaluate and package: metadata and report builders."""

import base64
import json
import re
from dataclasses import FrozenInstanceError

import numpy as np
import pytest

from planets_mlops.evaluate import Comparison, EvaluateResult, render_report
from planets_mlops.knobs import TrainParams
from planets_mlops.package import PackageResult
from planets_mlops.prepare import PREVIEW, PrepareResult
from planets_mlops.train import TrainResult

MANIFEST = {
    "classes": ["Earth", "Moon"],
    "preprocess": {"image_size": 32, "grayscale": True, "rescale": 1 / 255},
    "skipped": [{"file": "Earth/bad.jpg", "reason": "not an image"}],
    "split_method": "stable-over-base",
    "splits": {"train": {"count": 8}, "validation": {"count": 2}},
}
HISTORY = {
    "accuracy": [0.5, 0.75],
    "loss": [1.0, 0.5],
    "val_accuracy": [0.25, 0.5],
    "val_loss": [1.5, 1.25],
}


def _train_result() -> TrainResult:
    return TrainResult(
        params=TrainParams(epochs=2),
        classes=["Earth", "Moon"],
        train_images=8,
        validation_images=2,
        history=HISTORY,
        train_seconds=1.5,
        parameters=1234,
        framework="tensorflow 2.x",
    )


def _evaluate_result(comparison: Comparison | None) -> EvaluateResult:
    return EvaluateResult(
        metrics={
            "val_loss": 0.4,
            "val_accuracy": 0.9,
            "precision_macro": 0.8,
            "recall_macro": 0.7,
            "f1_macro": 0.75,
        },
        classes=["Earth", "Moon"],
        confusion_matrix=[[5, 1], [0, 4]],
        predictions=[0, 0, 1],
        promote=comparison.promote if comparison else True,
        comparison=comparison,
    )


def test_prepare_metadata_records_counts_and_the_source_provenance(tmp_path):
    result = PrepareResult(manifest=MANIFEST, out_dir=tmp_path)
    assert result.metadata(source={"commit": "abc123", "dvc_hash": "d41d.dir", "rev": "v1"}) == {
        "classes": ["Earth", "Moon"],
        "preprocess": MANIFEST["preprocess"],
        "train_count": 8,
        "validation_count": 2,
        "skipped": 1,
        "split_method": "stable-over-base",
        "source_commit": "abc123",
        "source_dvc_hash": "d41d.dir",
        "source_base_commit": "abc123",
        "data_content_hash": "",
    }
    unsourced = result.metadata()
    assert unsourced["source_commit"] == "" and unsourced["source_dvc_hash"] == ""


def test_prepare_preview_html_embeds_the_preview_picture(tmp_path):
    picture = b"\x89PNG\r\n\x1a\n not really a picture"
    (tmp_path / PREVIEW).write_bytes(picture)
    page = PrepareResult(manifest=MANIFEST, out_dir=tmp_path).preview_html()
    assert "<h1>Prepared data: 2 classes, 10 images</h1>" in page
    assert "<tr><td>Earth</td>" in page and "<tr><td>Moon</td>" in page and "1 file(s) skipped" in page
    (encoded,) = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    assert base64.b64decode(encoded) == picture


def test_prepare_preview_html_escapes_class_names(tmp_path):
    (tmp_path / PREVIEW).write_bytes(b"png")
    manifest = {**MANIFEST, "classes": ["<script>x</script>", "Moon"]}
    page = PrepareResult(manifest=manifest, out_dir=tmp_path).preview_html()
    assert "<script>" not in page and "&lt;script&gt;x&lt;/script&gt;" in page


def test_train_metrics_name_train_and_validation_values_apart():
    result = _train_result()
    assert result.final == {"accuracy": 0.75, "loss": 0.5, "val_accuracy": 0.5, "val_loss": 1.25}
    assert result.metrics() == {
        "train_accuracy": 0.75,
        "train_loss": 0.5,
        "val_accuracy": 0.5,
        "val_loss": 1.25,
    }


def test_train_metadata_records_the_model_and_the_data_provenance():
    metadata = _train_result().metadata(source={"source_commit": "abc123", "source_dvc_hash": "d41d.dir"})
    assert metadata == {
        "framework": "tensorflow 2.x",
        "augment": "photometric",
        "augmentation": ["brightness", "contrast", "blur", "noise"],
        "classes": ["Earth", "Moon"],
        "parameters": 1234,
        "train_seconds": 1.5,
        "data_commit": "abc123",
        "data_dvc_hash": "d41d.dir",
        "data_base_commit": "",
        "data_content_hash": "",
        "train_params": {
            "train_lr": 0.001,
            "train_lr_schedule": "cosine",
            "train_epochs": 2,
            "train_conv_size": 64,
            "train_dense_size": 128,
            "train_batch_size": 32,
            "train_seed": 5241,
        },
        # One device: no strategy, the knobs' batch and learning rate as they are.
        "distribution": {
            "strategy": "default",
            "replicas": 1,
            "workers": 1,
            "per_replica_batch_size": 32,
            "global_batch_size": 32,
            "lr_scaling": "none",
            "lr": 0.001,
        },
        # The last epoch under the names of train-model's metrics (metric_names.TRAINING).
        "train_accuracy": 0.75,
        "train_loss": 0.5,
        "val_accuracy": 0.5,
        "val_loss": 1.25,
    }
    assert _train_result().metadata()["data_commit"] == ""


def test_train_history_json_and_curves_page():
    result = _train_result()
    assert json.loads(result.history_json()) == HISTORY
    page = result.curves_html()
    assert page.startswith("<html><body><h1>Training curves</h1>")
    (encoded,) = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    assert base64.b64decode(encoded).startswith(b"\x89PNG")


def test_results_are_frozen():
    with pytest.raises(FrozenInstanceError):
        _train_result().parameters = 1  # type: ignore[misc]


def test_evaluate_metadata_without_production_is_the_metrics():
    result = _evaluate_result(None)
    assert result.metadata() == result.metrics
    assert result.promote is True


def test_evaluate_metadata_adds_the_comparison():
    comparison = Comparison(
        production_model_uri="gs://models/prod",
        production_val_accuracy=0.95,
        production_val_loss=0.3,
        delta_val_accuracy=-0.05,
        promote=False,
    )
    metadata = _evaluate_result(comparison).metadata()
    assert list(metadata) == [
        "val_loss",
        "val_accuracy",
        "precision_macro",
        "recall_macro",
        "f1_macro",
        "production_val_accuracy",
        "delta_val_accuracy",
    ]
    assert metadata["production_val_accuracy"] == 0.95 and metadata["delta_val_accuracy"] == -0.05


@pytest.mark.parametrize(("promote", "verdict"), [(True, "Promote"), (False, "Keep production")])
def test_report_states_the_comparison_and_the_decision(promote, verdict):
    comparison = Comparison("gs://models/<prod>", 0.85, 0.5, 0.05, promote)
    page = render_report({"val_accuracy": 0.9}, ["Earth", "Moon"], {}, {}, comparison, np.array([0.5, 1.0]))
    assert (
        "<code>gs://models/&lt;prod&gt;</code>: val_accuracy 0.8500, candidate 0.9000 (delta +0.0500)" in page
    )
    assert f"<b>{verdict}</b>" in page
    assert "<tr><td>Moon</td><td class='num'>1.000</td></tr>" in page
    without = render_report({"val_accuracy": 0.9}, ["Earth", "Moon"], {}, {}, None, np.array([0.5, 1.0]))
    assert "No production model given" in without


def test_package_metadata_names_the_bento_and_its_provenance():
    result = PackageResult(
        bento_tag="planets_classifier:v1",
        model_tag="planets-classifier:v1",
        size_bytes=4096,
        requirements=["bentoml==1.0", "numpy==2.0"],
        labels={"data_revision": "abc123", "model_uri": "gs://b/model"},
        classes=["Earth", "Moon"],
        seconds=3.25,
        data_revision="abc123",
        model_uri="gs://b/model",
    )
    assert result.metadata() == {
        "bento_tag": "planets_classifier:v1",
        "model_tag": "planets-classifier:v1",
        "data_revision": "abc123",
        "model_uri": "gs://b/model",
        "classes": ["Earth", "Moon"],
        "size_bytes": 4096,
        "serving_requirements": ["bentoml==1.0", "numpy==2.0"],
        "framework": "onnxruntime",
    }


def test_the_verdict_goes_into_metadata_report_and_markdown():
    from planets_mlops.gate import decide

    labels = np.array([0] * 10 + [1] * 10)
    candidate = labels.copy()
    production = labels.copy()
    production[:10] = 1  # production gets every Earth wrong: 10 wins for the candidate
    verdict = decide(labels, candidate, production, ["Earth", "Moon"], ["Earth", "Moon"])
    comparison = Comparison("gs://models/prod", 0.5, 0.7, 0.5, verdict.promote, verdict)
    result = _evaluate_result(comparison)
    metadata = result.metadata()
    assert metadata["gate_mcnemar_p"] == pytest.approx(2 * 0.5**10)
    assert metadata["gate_wins"] == 10 and metadata["gate_losses"] == 0 and metadata["gate_promote"] == 1.0
    markdown = result.verdict_markdown("gs://models/cand")
    assert markdown.startswith("# Promotion gate: **PROMOTE**")
    assert "`gs://models/cand` against production `gs://models/prod`" in markdown
    assert "| Earth | 10 | 0.0000 | 1.0000 | +1.0000 |" in markdown
    page = render_report(result.metrics, result.classes, {}, {}, comparison, np.array([0.5, 1.0]))
    assert "McNemar p 0.001953" in page and "<li>Not worse beyond noise" in page
    assert "No production model given" in _evaluate_result(None).verdict_markdown()


def test_report_names_production_by_its_registry_version_when_known():
    comparison = Comparison("/tmp/production-x1y2/model", 0.85, 0.5, 0.05, True)
    page = render_report(
        {"val_accuracy": 0.9},
        ["Earth", "Moon"],
        {},
        {},
        comparison,
        np.array([0.5, 1.0]),
        provenance={"run": "training-1", "production": "version 3 of planets-classifier"},
    )
    assert "Production model <code>version 3 of planets-classifier</code>" in page
    assert "/tmp/production-x1y2" not in page
    assert "<tr><th>run</th><td>training-1</td></tr>" in page
