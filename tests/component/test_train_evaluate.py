"""Training and evaluation logic on real (small) data, and the pure scoring functions."""

import json

import numpy as np
import pytest

from planets_mlops.errors import DataError, InvalidParameterError
from planets_mlops.evaluate import classification_scores, confusion_matrix, evaluate_model
from planets_mlops.model_folder import predict_logits
from planets_mlops.prepared import load_split
from planets_mlops.train import TrainParams, train_model


@pytest.mark.parametrize(
    "field, value, fragment",
    [
        ("epochs", 0, "epochs=0"),
        ("epochs", -1, "epochs=-1"),
        ("lr", 0.0, "lr=0.0"),
        ("conv_size", 0, "conv_size=0"),
        ("batch_size", -32, "batch_size=-32"),
        ("lr", float("inf"), "lr=inf"),
        ("lr", float("nan"), "lr=nan"),
    ],
)
def test_bad_training_parameters(field, value, fragment):
    with pytest.raises(InvalidParameterError, match=fragment):
        TrainParams(**{field: value})


def test_confusion_matrix_and_macro_scores_by_hand():
    labels = np.array([0, 0, 1, 1, 2, 2])
    logits = np.eye(3)[[0, 1, 1, 1, 2, 0]] * 5.0
    scores = classification_scores(logits, labels, 3)
    assert scores["confusion_matrix"].tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert scores["val_accuracy"] == pytest.approx(4 / 6)
    # precision per class: 1/2, 2/3, 1/1; recall: 1/2, 1, 1/2
    assert scores["precision_macro"] == pytest.approx((0.5 + 2 / 3 + 1) / 3)
    assert scores["recall_macro"] == pytest.approx((0.5 + 1 + 0.5) / 3)
    assert confusion_matrix(labels, labels, 3).trace() == 6


def test_class_with_no_predictions_scores_zero_not_nan():
    scores = classification_scores(np.tile([5.0, 0.0], (4, 1)), np.array([0, 0, 1, 1]), 2)
    assert scores["precision_macro"] == pytest.approx(0.25)
    assert not np.isnan(scores["f1_macro"])


def test_tiny_model_folder_and_onnx_matches_keras(tiny_model, small_prepared):
    for name in ("model.keras", "model.onnx", "classes.json", "preprocess.json", "history.json"):
        assert (tiny_model / name).is_file(), name
    assert json.loads((tiny_model / "classes.json").read_text()) == ["Earth", "Jupiter", "Moon"]
    history = json.loads((tiny_model / "history.json").read_text())
    assert len(history["loss"]) == 2 and len(history["val_accuracy"]) == 2

    import keras

    images, _ = load_split(small_prepared, "validation")
    keras_logits = keras.models.load_model(tiny_model / "model.keras")(images, training=False).numpy()
    onnx_logits = predict_logits(tiny_model, images)
    assert np.max(np.abs(keras_logits - onnx_logits)) < 1e-4


def test_model_folder_carries_a_calibrated_guard_and_named_onnx_outputs(tiny_model, small_prepared):
    import onnxruntime as ort

    from planets_mlops.augment import benign_changes
    from planets_mlops.guard import load_guard
    from planets_mlops.model_folder import predict_outputs

    session = ort.InferenceSession(str(tiny_model / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [output.name for output in session.get_outputs()] == ["logits", "embedding"]
    guard = load_guard(tiny_model)
    train_images, train_labels = load_split(small_prepared, "train")
    images, labels = load_split(small_prepared, "validation")
    # The bank: every training image as it is and once under benign changes, with its class.
    assert guard.bank.shape == (2 * len(train_images), 16)  # dense_size=16
    np.testing.assert_array_equal(guard.labels, np.sort(np.concatenate([train_labels, train_labels])))
    assert guard.coverage == TrainParams().guard_coverage == 0.99
    assert len(guard.class_thresholds) == 3 and guard.threshold == 0.5
    # The calibration: validation images, as they are and under each benign change, that the
    # model classifies right; the guard keeps at least the stated share of them.
    kept = []
    for batch in [images, *benign_changes(images, seed=TrainParams().seed).values()]:
        logits, embedding = predict_outputs(tiny_model, batch)
        right = logits.argmax(axis=1) == labels
        kept.append(guard.recognised(guard.scores(embedding[right], batch[right])))
    assert np.mean(np.concatenate(kept)) >= 0.99
    assert guard.calibration["count"] == len(np.concatenate(kept))
    assert guard.calibration["kept"] >= 0.99


def test_model_folder_carries_the_monitoring_reference_of_the_validation_images(tiny_model, small_prepared):
    """The profile is of the validation images, with the model's own answers and embeddings on them."""
    from planets_mlops.model_folder import predict_outputs
    from planets_mlops.monitoring import features
    from planets_mlops.monitoring.reference import load_reference

    profile = load_reference(tiny_model)
    images, _ = load_split(small_prepared, "validation")
    classes = json.loads((tiny_model / "classes.json").read_text())
    logits, embedding = predict_outputs(tiny_model, images)
    assert profile.count == len(images) and profile.classes == classes
    np.testing.assert_allclose(profile.features, features.image_features(images), atol=1e-6)
    np.testing.assert_allclose(profile.embeddings, features.project_embeddings(embedding), atol=1e-4)
    assert profile.predictions == [classes[i] for i in np.argmax(logits, axis=-1)]
    assert sum(profile.prediction_shares().values()) == pytest.approx(1.0)


def test_evaluate_reports_the_guard_and_its_rejection_of_unseen_images(tiny_model, small_prepared, tmp_path):
    from planets_mlops.preprocess import PreprocessConfig, preprocess_image
    from tests.support.fixtures.data import PLANETS

    config = PreprocessConfig.from_dict(json.loads((tiny_model / "preprocess.json").read_text()))
    unseen = np.stack(
        [preprocess_image(p, config) for p in sorted((PLANETS / "raw" / "Saturn").iterdir())[:10]]
    )
    result = evaluate_model(small_prepared, tiny_model, tmp_path / "report.html", unseen_images=unseen)
    assert set(result.guard) == {
        "guard_threshold",
        "guard_coverage",
        "guard_benign_coverage",
        "guard_unseen_rejected",
    }
    assert result.guard["guard_threshold"] == 0.5
    for key in ("guard_coverage", "guard_benign_coverage", "guard_unseen_rejected"):
        assert 0.0 <= result.guard[key] <= 1.0
    assert result.guard["guard_benign_coverage"] > 0.5
    assert result.metadata()["guard_coverage"] == result.guard["guard_coverage"]
    report = (tmp_path / "report.html").read_text()
    assert "Open-set guard" in report and "benign changes" in report
    # The trade-off curve is in the report, as a picture.
    assert (
        "Open-set guard: coverage and rejection by threshold</h2><img alt='Open-set guard: coverage and "
        "rejection by threshold' src='data:image/png;base64," in report
    )


def test_guard_coverage_knob_is_checked():
    with pytest.raises(InvalidParameterError, match="guard_coverage"):
        TrainParams(guard_coverage=0.0)
    with pytest.raises(InvalidParameterError, match="guard_coverage"):
        TrainParams(guard_coverage=1.5)


def test_training_is_deterministic(small_prepared, tmp_path):
    params = TrainParams(epochs=2, conv_size=8, dense_size=16, lr=0.01)
    first = train_model(small_prepared, tmp_path / "a", params)
    second = train_model(small_prepared, tmp_path / "b", params)
    assert first.history == second.history
    # The same weights: identical logits on every validation image, so an equal val_accuracy.
    images, _ = load_split(small_prepared, "validation")
    assert np.array_equal(predict_logits(tmp_path / "a", images), predict_logits(tmp_path / "b", images))


def test_the_model_says_which_augmentation_training_applied(tiny_model):
    preprocess = json.loads((tiny_model / "preprocess.json").read_text())
    augmentation = preprocess["training_augmentation"]
    assert augmentation["set"] == TrainParams().augment == "photometric"
    assert [c["name"] for c in augmentation["changes"]] == ["brightness", "contrast", "blur", "noise"]
    # Serving still reads the preprocessing from the same file, unchanged by the extra key.
    from planets_mlops.preprocess import PreprocessConfig

    assert PreprocessConfig.from_dict(preprocess).input_shape == (32, 32, 3)


def test_training_without_augmentation_records_none(small_prepared, tmp_path):
    params = TrainParams(epochs=1, conv_size=8, dense_size=16, lr=0.01, augment="none")
    result = train_model(small_prepared, tmp_path / "m", params)
    assert result.metadata()["augment"] == "none" and result.metadata()["augmentation"] == []
    preprocess = json.loads((tmp_path / "m" / "preprocess.json").read_text())
    assert preprocess["training_augmentation"]["changes"] == []


def test_class_count_mismatch_names_the_fix(small_prepared, tmp_path):
    with pytest.raises(DataError, match=r"output_classes=10.*3 classes.*Set output_classes to 3"):
        train_model(small_prepared, tmp_path / "m", TrainParams(output_classes=10, epochs=1))


def test_evaluate_writes_report_and_compares_with_production(tiny_model, small_prepared, tmp_path):
    result = evaluate_model(
        small_prepared, tiny_model, tmp_path / "report.html", production_model_dir=tiny_model
    )
    metrics = result.metrics
    history = json.loads((tiny_model / "history.json").read_text())
    # ONNX evaluation reproduces Keras' own validation accuracy of the last epoch.
    assert metrics["val_accuracy"] == pytest.approx(history["val_accuracy"][-1], abs=1e-6)
    assert np.array(result.confusion_matrix).sum() == 12
    assert result.comparison is not None
    assert result.comparison.delta_val_accuracy == 0.0 and result.promote is True
    report = (tmp_path / "report.html").read_text()
    for needle in (
        "val_accuracy",
        "Confusion matrix",
        "Training history",
        "Per class",
        "data:image/png;base64",
    ):
        assert needle in report
    stricter = evaluate_model(
        small_prepared, tiny_model, tmp_path / "r2.html", tiny_model, min_improvement=0.01
    )
    assert stricter.promote is False


@pytest.mark.parametrize("against_production", [False, True])
def test_evaluate_candidate_names_the_opponent_it_found(
    tiny_model, small_prepared, tmp_path, against_production
):
    # What the evaluate_model component calls: the opponent (an explicit URI here, tracking
    # off), the report's header and the verdict's metadata.
    from planets_mlops.evaluate import evaluate_candidate
    from planets_mlops.knobs import EvaluateParams, RegistryParams

    uri = str(tiny_model) if against_production else ""
    evaluation = evaluate_candidate(
        small_prepared,
        tiny_model,
        tmp_path / "report.html",
        tmp_path / "verdict.md",
        EvaluateParams(min_improvement=0.01 if against_production else 0.0),
        RegistryParams(tracking=False),
        uri,
        model_metadata={"framework": "tensorflow"},
        run_name="run-7",
    )
    meta = evaluation.verdict_metadata()
    assert meta["production_version"] == ""
    assert meta["production_source"] == uri
    # min_improvement reaches the gate: the same model does not gain 0.01 over itself.
    assert meta["promote"] is evaluation.result.promote is (not against_production)
    assert (meta["gate"]["overall"] is not None) is against_production
    report = (tmp_path / "report.html").read_text()
    assert "run-7" in report and "tensorflow" in report
    assert (str(tiny_model) in report) is against_production
    assert (tmp_path / "verdict.md").read_text().startswith("# Promotion gate")


def test_evaluate_rejects_a_model_of_other_classes(tiny_model, tmp_path):
    from planets_mlops.prepare import PrepareParams, prepare_dataset
    from tests.support.fixtures.data import copy_subset

    raw = copy_subset(tmp_path / "raw", classes=("Mars", "Venus"), per_class=5)
    prepare_dataset(raw, tmp_path / "prep", PrepareParams())
    with pytest.raises(DataError, match="trained on classes"):
        evaluate_model(tmp_path / "prep", tiny_model, tmp_path / "r.html")


def test_evaluate_compares_with_a_production_model_that_lacks_a_class(tiny_model, small_prepared, tmp_path):
    from planets_mlops.prepare import PrepareParams, prepare_dataset
    from tests.support.fixtures.data import copy_subset

    raw = copy_subset(tmp_path / "raw", classes=("Earth", "Jupiter"), per_class=20)
    prepare_dataset(raw, tmp_path / "prep", PrepareParams())
    params = TrainParams(epochs=2, conv_size=8, dense_size=16, lr=0.01)
    train_model(tmp_path / "prep", tmp_path / "production", params)
    result = evaluate_model(
        small_prepared,
        tiny_model,
        tmp_path / "report.html",
        tmp_path / "production",
        min_improvement=0.5,
        verdict_path=tmp_path / "verdict.md",
    )
    assert result.comparison is not None and result.comparison.verdict is not None
    verdict = result.comparison.verdict
    # The comparison is on the validation images of Earth and Jupiter (labels 0 and 1).
    _, labels = load_split(small_prepared, "validation")
    assert verdict.shared_classes == ["Earth", "Jupiter"]
    assert verdict.overall.images == int(np.sum(labels < 2)) > 0
    (moon,) = verdict.new_classes
    matrix = np.array(result.confusion_matrix)
    assert (moon.name, moon.images) == ("Moon", int(np.sum(labels == 2)))
    assert moon.recall == pytest.approx(matrix[2, 2] / matrix[2].sum())
    # A new class replaces the required gain; only "worse beyond noise" can refuse it.
    worse = verdict.overall.worse or any(s.worse for s in verdict.per_class.values())
    assert result.promote is (not worse)
    markdown = (tmp_path / "verdict.md").read_text()
    assert "## New classes" in markdown and f"| Moon | {moon.images} |" in markdown
    assert result.metadata()["new_class_recall_Moon"] == pytest.approx(moon.recall)


def test_training_that_diverges_fails_clearly_and_writes_no_model(small_prepared, tmp_path):
    from planets_mlops.errors import TrainingDivergedError

    params = TrainParams(epochs=2, conv_size=8, dense_size=16, lr=1e30)  # finite, but diverges
    with pytest.raises(
        TrainingDivergedError, match=r"Training diverged at epoch 1.*not finite.*train_lr=1e\+30"
    ):
        train_model(small_prepared, tmp_path / "model", params)
    assert not (tmp_path / "model" / "model.onnx").exists()


def _nan_model(tiny_model, folder):
    """A copy of a real model whose weights are NaN, as training with lr=inf left them."""
    import shutil

    import onnx
    from onnx import numpy_helper

    shutil.copytree(tiny_model, folder)
    graph = onnx.load(folder / "model.onnx")
    for index, tensor in enumerate(graph.graph.initializer):
        values = numpy_helper.to_array(tensor)
        if values.dtype == np.float32 and values.size > 1:
            graph.graph.initializer[index].CopyFrom(
                numpy_helper.from_array(np.full_like(values, np.nan), tensor.name)
            )
    onnx.save(graph, folder / "model.onnx")
    # Without its open-set guard (whose NaN embedding check would stop evaluation first):
    # the gate itself must refuse the model.
    for name in ("guard.json", "guard_bank.npy", "guard_images.npy"):
        (folder / name).unlink(missing_ok=True)
    return folder


def test_a_model_with_non_finite_outputs_is_never_promoted(small_prepared, tiny_model, tmp_path):
    from kfp import dsl

    from planets_mlops.components.evaluate_model import evaluate_model as component
    from tests.support.helpers import make_artifact

    nan_model = _nan_model(tiny_model, tmp_path / "nan-model")
    prepared = make_artifact(dsl.Dataset, small_prepared)
    model = make_artifact(dsl.Model, nan_model)
    outputs = {
        "metrics": make_artifact(dsl.Metrics, tmp_path / "metrics"),
        "confusion": make_artifact(dsl.ClassificationMetrics, tmp_path / "confusion"),
        "report": make_artifact(dsl.HTML, tmp_path / "report.html"),
        "verdict": make_artifact(dsl.Markdown, tmp_path / "verdict.md"),
    }
    # No production model: anything finite would be promoted.
    assert component.python_func(prepared=prepared, model=model, **outputs).promote is False
    assert evaluate_model(small_prepared, tiny_model, tmp_path / "r.html").promote is True
    # Against production too, whatever the accuracy from argmax over NaN says.
    result = evaluate_model(
        small_prepared, nan_model, tmp_path / "r2.html", production_model_dir=tiny_model, min_improvement=-1.0
    )
    assert result.promote is False and result.comparison.promote is False


@pytest.fixture(scope="module")
def gray_candidate(tmp_path_factory, small_raw):
    """A grayscale 24 px data set and a tiny model trained on it: (prepared folder, model folder).

    Other preprocessing than ``tiny_model``'s (colour, 32 px), for the gating tests; read-only.
    """
    from planets_mlops.prepare import PrepareParams, prepare_dataset

    base = tmp_path_factory.mktemp("gray-candidate")
    gray = prepare_dataset(small_raw, base / "gray", PrepareParams(grayscale=True, image_size=24)).out_dir
    train_model(gray, base / "candidate", TrainParams(epochs=2, conv_size=8, dense_size=16, lr=0.01))
    return gray, base / "candidate"


def test_a_grayscale_candidate_is_gated_against_a_colour_production_model(
    tiny_model, gray_candidate, small_prepared, tmp_path
):
    """Each model is scored with its own preprocessing on the same raw validation images: a
    grayscale 24 px candidate against the colour 32 px production model (no ONNX shape error)."""
    from planets_mlops.evaluate import production_inputs
    from planets_mlops.prepared import load_raw_split
    from planets_mlops.preprocess import PreprocessConfig

    gray, candidate = gray_candidate
    result = evaluate_model(gray, candidate, tmp_path / "report.html", production_model_dir=tiny_model)
    assert result.comparison is not None and result.comparison.verdict is not None
    # Production's score here is the one it gets on its own (colour, 32 px) data set: the
    # same 12 validation images (same seed and split), its own tensors.
    colour, labels = load_split(small_prepared, "validation")
    expected = float(np.mean(predict_logits(tiny_model, colour).argmax(axis=1) == labels))
    assert result.comparison.production_val_accuracy == pytest.approx(expected)
    assert result.comparison.verdict.overall.images == len(labels) == 12
    # The raw images preprocessed as production does are production's own tensors.
    inputs = production_inputs(tiny_model, gray, load_split(gray, "validation")[0])
    assert inputs.shape == colour.shape
    np.testing.assert_allclose(inputs, colour, atol=1e-6)
    raw, raw_labels = load_raw_split(gray, "validation", PreprocessConfig(image_size=24, grayscale=True))
    np.testing.assert_allclose(raw, load_split(gray, "validation")[0], atol=1e-6)
    assert raw_labels.tolist() == labels.tolist()


def test_gating_against_other_preprocessing_needs_the_raw_validation_images(
    tiny_model, gray_candidate, tmp_path
):
    import shutil

    gray = shutil.copytree(gray_candidate[0], tmp_path / "gray")  # the fixture's stays whole
    candidate = gray_candidate[1]
    shutil.rmtree(gray / "validation" / "raw")
    manifest = json.loads((gray / "manifest.json").read_text())
    del manifest["splits"]["validation"]["raw"]
    (gray / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="keeps no raw validation images.*Prepare the data set again"):
        evaluate_model(gray, candidate, tmp_path / "report.html", production_model_dir=tiny_model)
