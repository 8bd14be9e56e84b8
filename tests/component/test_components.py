"""Components through ``.python_func`` with real kfp.dsl artifacts on tmp_path."""

import json
from pathlib import Path

from kfp import dsl

from planets_mlops import metric_names
from planets_mlops.components.evaluate_model import evaluate_model
from planets_mlops.components.prepare_dataset import prepare_dataset
from planets_mlops.components.pull_data import pull_data
from planets_mlops.components.train_model import train_model
from tests.support.helpers import make_artifact


def test_the_four_components_chain(data_repo, tmp_path):
    dataset = make_artifact(dsl.Dataset, tmp_path / "dataset")
    pull_data.python_func(dataset=dataset, repo_url=data_repo["url"], rev="v1", path="data/raw")
    assert dataset.metadata["commit"] == data_repo["commit"]
    assert dataset.metadata["class_counts"] == {"Earth": 20, "Jupiter": 20, "Moon": 20}
    assert dataset.metadata["dvc_hash"].endswith(".dir")

    prepared = make_artifact(dsl.Dataset, tmp_path / "prepared")
    preview = make_artifact(dsl.HTML, tmp_path / "preview")
    prepare_dataset.python_func(raw=dataset, prepared=prepared, preview=preview, output_classes=3)
    shown = Path(preview.path).read_text()
    assert "Prepared data: 3 classes, 60 images" in shown
    assert all(f"<tr><td>{name}</td>" in shown for name in ("Earth", "Jupiter", "Moon"))
    assert prepared.metadata["train_count"] == 48 and prepared.metadata["validation_count"] == 12
    assert prepared.metadata["source_commit"] == data_repo["commit"]
    assert (Path(prepared.path) / "preview.png").is_file()

    model = make_artifact(dsl.Model, tmp_path / "model")
    history = make_artifact(dsl.Artifact, tmp_path / "history")
    train_metrics = make_artifact(dsl.Metrics, tmp_path / "train_metrics")
    curves = make_artifact(dsl.HTML, tmp_path / "curves")
    train_model.python_func(
        prepared=prepared,
        model=model,
        history=history,
        metrics=train_metrics,
        curves=curves,
        epochs=1,
        conv_size=8,
        dense_size=16,
        output_classes=3,
    )
    assert (Path(model.path) / "model.onnx").is_file()
    assert model.metadata["data_commit"] == data_repo["commit"]
    assert model.metadata["classes"] == ["Earth", "Jupiter", "Moon"]
    assert len(json.loads(Path(history.path).read_text())["loss"]) == 1
    assert set(train_metrics.metadata) == set(metric_names.TRAINING)
    assert {k: model.metadata[k] for k in metric_names.TRAINING} == dict(train_metrics.metadata)
    assert "data:image/png;base64" in Path(curves.path).read_text()

    metrics = make_artifact(dsl.Metrics, tmp_path / "metrics")
    confusion = make_artifact(dsl.ClassificationMetrics, tmp_path / "confusion")
    report = make_artifact(dsl.HTML, tmp_path / "report")
    verdict = make_artifact(dsl.Markdown, tmp_path / "verdict")
    promote = evaluate_model.python_func(
        prepared=prepared,
        model=model,
        metrics=metrics,
        confusion=confusion,
        report=report,
        verdict=verdict,
        production_model_uri=model.path,
    ).promote
    assert promote is True and verdict.metadata["promote"] is True
    # The same model against itself: no discordant pair, p = 1, a zero-width interval.
    assert "# Promotion gate: **PROMOTE**" in Path(verdict.path).read_text()
    assert metrics.metadata["gate_mcnemar_p"] == 1.0 and metrics.metadata["gate_delta_low"] == 0.0
    assert set(metrics.metadata) >= {
        "val_loss",
        "val_accuracy",
        "precision_macro",
        "recall_macro",
        "f1_macro",
    }
    assert metrics.metadata["delta_val_accuracy"] == 0.0
    # One name per quantity: nothing evaluate writes is outside planets_mlops.metric_names.
    assert [name for name in metrics.metadata if not metric_names.is_declared(name)] == []
    assert set(metrics.metadata) >= {
        *metric_names.CLASSIFICATION,
        *metric_names.COMPARISON,
        *metric_names.GATE,
    }
    matrix = confusion.metadata["confusionMatrix"]
    assert [spec["displayName"] for spec in matrix["annotationSpecs"]] == ["Earth", "Jupiter", "Moon"]
    assert sum(sum(row["row"]) for row in matrix["rows"]) == 12
    assert "Confusion matrix" in Path(report.path).read_text()


def test_prepare_refuses_an_image_size_the_model_cannot_take_before_writing(small_raw, tmp_path):
    import pytest

    from planets_mlops.errors import InvalidParameterError

    dataset = make_artifact(dsl.Dataset, small_raw)
    for size in (1, 2, 4):
        prepared = make_artifact(dsl.Dataset, tmp_path / f"prepared-{size}")
        preview = make_artifact(dsl.HTML, tmp_path / f"preview-{size}")
        with pytest.raises(InvalidParameterError, match=rf"image_size={size}.*at least 5"):
            prepare_dataset.python_func(raw=dataset, prepared=prepared, preview=preview, image_size=size)
        assert not Path(prepared.path).exists()


def test_train_refuses_a_non_finite_learning_rate(tmp_path):
    import pytest

    from planets_mlops.errors import InvalidParameterError

    for lr in (float("inf"), float("nan")):
        with pytest.raises(InvalidParameterError, match=r"lr=(inf|nan).*finite"):
            train_model.python_func(
                prepared=make_artifact(dsl.Dataset, tmp_path / "prepared"),
                model=make_artifact(dsl.Model, tmp_path / "model"),
                history=make_artifact(dsl.Artifact, tmp_path / "history"),
                metrics=make_artifact(dsl.Metrics, tmp_path / "metrics"),
                curves=make_artifact(dsl.HTML, tmp_path / "curves"),
                lr=lr,
            )
