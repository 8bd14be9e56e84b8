"""The drift check (planets_mlops.monitoring.drift) on records made from real images, with real Evidently.

No model runs here (that is the monitoring pipeline's test): the records' embedding is a
fixed random projection of the pixels and the prediction is the image's true class, a
stand-in that lets the drift logic be tested on many windows quickly. The image features
are the real ones of the real bundled images, shifted as production would shift them.
"""

from __future__ import annotations

import dataclasses
import json
import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from planets_mlops.app.dev import traffic
from planets_mlops.errors import InvalidParameterError
from planets_mlops.knobs import DriftParams
from planets_mlops.monitoring import drift
from planets_mlops.monitoring.records import Window, make_records
from planets_mlops.monitoring.reference import build_reference, load_reference
from planets_mlops.preprocess import PreprocessConfig, preprocess_image

RAW = Path(__file__).resolve().parents[2] / "data" / "planets" / "raw"
CLASSES = ("Earth", "Jupiter", "Moon")
PER_CLASS = 150
CONFIG = PreprocessConfig(image_size=32, grayscale=False)
WHEN = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)


def _standin_embeddings(tensors: np.ndarray) -> np.ndarray:
    projection = np.random.default_rng(7).standard_normal((int(np.prod(tensors.shape[1:])), 16))
    return tensors.reshape(len(tensors), -1) @ projection


def _tensors(images: list[bytes]) -> np.ndarray:
    return np.stack([preprocess_image(data, CONFIG) for data in images])


def _answers(labels: list[str]) -> list[dict]:
    return [{"prediction": label, "closest_class": label, "probabilities": {label: 1.0}} for label in labels]


def _window(images: list[bytes], labels: list[str]) -> Window:
    tensors = _tensors(images)
    records = make_records(tensors, _answers(labels), "m:1", _standin_embeddings(tensors), WHEN)
    return Window(records=records, objects=1, skipped={}, truncated=False)


@pytest.fixture(scope="module")
def images():
    """Per class: (reference half, traffic half) of the class's real images, as bytes."""
    halves = {}
    for name in CLASSES:
        files = sorted((RAW / name).iterdir())[:PER_CLASS]
        data = [path.read_bytes() for path in files]
        halves[name] = (data[0::2], data[1::2])
    return halves


@pytest.fixture(scope="module")
def reference(images):
    data = [img for name in CLASSES for img in images[name][0]]
    labels = [name for name in CLASSES for _ in images[name][0]]
    tensors = _tensors(data)
    return build_reference(tensors, labels, list(CLASSES), _standin_embeddings(tensors))


def _traffic(images, shift="none", classes=CLASSES):
    data = [traffic.shift_image(img, shift) for name in classes for img in images[name][1]]
    return _window(data, [name for name in classes for _ in images[name][1]])


@pytest.fixture(scope="module")
def results(images, reference, tmp_path_factory):
    """One Evidently run per case (each takes about a second)."""
    out = tmp_path_factory.mktemp("drift")
    cases = {
        "in-distribution": _traffic(images),
        "darken": _traffic(images, "darken"),
        "rotate": _traffic(images, "rotate"),
        "class mix": _traffic(images, classes=("Jupiter",)),
    }
    return {
        name: (drift.detect_drift(reference, window, report_path=out / f"{name}.html"), out / f"{name}.html")
        for name, window in cases.items()
    }


def test_in_distribution_traffic_gives_no_alarm(results):
    result, report = results["in-distribution"]
    assert result.verdict == drift.NO_DRIFT, result.reason
    assert result.records == 225 and result.reference_records == 225
    assert {g: v["tested"] for g, v in result.groups().items()} == {
        "image": 11,
        "embedding": 8,
        "prediction": 1,
    }
    assert result.threshold == pytest.approx(0.01 / 20)
    assert all(c.p_value >= result.threshold for c in result.columns)
    page = report.read_text()
    assert (
        page.lstrip().lower().startswith("<!doctype html>") and "brightness" in page and "embedding_7" in page
    )


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("darken", {"brightness", "dark_fraction"}),
        ("rotate", {"horizontal_energy"}),
        ("class mix", {"prediction"}),
    ],
)
def test_each_shift_is_found_where_it_should_be(results, case, expected):
    result, _ = results[case]
    assert result.verdict == drift.DRIFT, result.reason
    drifted = {c.column for c in result.drifted}
    assert expected <= drifted, drifted
    assert result.drift_share == len(drifted) / 20
    values = result.metadata()
    assert values["drift"] == 1.0 and values["drifted_columns"] == len(drifted)
    for name in expected:
        assert values[f"{name}_p_value"] < result.threshold
        assert values[f"{name}_statistic"] > 0


def test_darkening_lowers_brightness_and_the_markdown_says_so(results):
    result, _ = results["darken"]
    brightness = next(c for c in result.columns if c.column == "brightness")
    assert brightness.statistic > 0.5  # KS distance: most of the mass moved
    text = result.to_markdown()
    assert text.startswith("# Drift check: **DRIFT**")
    assert "| image | brightness |" in text and "m:1" not in text  # the window info is the caller's
    assert result.summary()["format"] == drift.SUMMARY_FORMAT


def test_a_small_window_is_not_enough_data_never_no_drift(images, reference, tmp_path):
    window = _traffic(images, classes=("Earth",))
    small = Window(records=window.records[:49], objects=1, skipped={}, truncated=False)
    report = tmp_path / "report.html"
    info = drift.WindowInfo(
        model_version="m:1", start="2026-12-04T09:00:00+00:00", end="2026-12-04T10:00:00+00:00"
    )
    result = drift.detect_drift(reference, small, DriftParams(), report, info)
    assert result.verdict == drift.NOT_ENOUGH_DATA
    assert "49 production records" in result.reason and "min_records (50)" in result.reason
    assert result.columns == [] and result.metadata()["enough_data"] == 0.0
    assert "not enough data" in report.read_text()
    assert "`m:1`" in result.to_markdown()


def test_a_reference_without_embeddings_tests_features_and_predictions_only(images, reference):
    bare = build_reference(np.zeros((60, 8, 8, 3), np.float32) + 0.5, ["Earth"] * 60, list(CLASSES))
    window = _traffic(images, classes=("Earth",))
    result = drift.detect_drift(bare, window, DriftParams(min_records=50))
    assert set(result.groups()) == {"image", "prediction"}
    assert any("no embeddings" in note for note in result.notes)
    assert result.verdict == drift.DRIFT  # flat grey squares are nothing like the planets


@pytest.mark.parametrize(
    ("knobs", "name"),
    [({"alpha": 0.0}, "alpha"), ({"drift_share": 1.5}, "drift_share"), ({"min_records": 0}, "min_records"),
     ({"numeric_test": "psi"}, "numeric_test"), ({"prediction_test": "ks"}, "prediction_test"),
     ({"min_records": 10, "max_records": 5}, "min_records")],
)  # fmt: skip
def test_bad_knobs_are_refused_by_name(knobs, name):
    with pytest.raises(InvalidParameterError, match=rf"Invalid {name}="):
        DriftParams(**knobs)


def test_extra_image_names_decode_to_their_class():
    extra = RAW.parent / "extra"
    names = [traffic.extra_class(path) for path in traffic.extra_images(extra)]
    assert len(names) == 500 and {names.count(c) for c in set(names)} == {50}
    assert len(traffic.extra_images(extra, ["Mars", "Moon"])) == 100


def test_a_saved_reference_against_its_own_images_gives_no_alarm(images, tmp_path):
    # The profile keeps 6 decimals; discrete features (dark_fraction) must still tie.
    data = [img for name in CLASSES for img in images[name][0]]
    labels = [name for name in CLASSES for _ in images[name][0]]
    tensors = _tensors(data)
    build_reference(tensors, labels, list(CLASSES), _standin_embeddings(tensors)).save(tmp_path)
    result = drift.detect_drift(load_reference(tmp_path), _window(data, labels))
    assert result.verdict == drift.NO_DRIFT, result.reason
    assert min(c.p_value for c in result.columns) > 0.5


def test_the_report_is_added_to_an_evidently_workspace(images, reference, tmp_path):
    from evidently.ui.workspace import Workspace

    window = _traffic(images, "darken")
    info = drift.WindowInfo(
        model_version="m:1", start="2026-12-04T09:00:00+00:00", end="2026-12-04T10:00:00+00:00"
    )
    result = drift.detect_drift(reference, window, info=info, workspace=str(tmp_path / "ws"))
    assert result.verdict == drift.DRIFT
    ws = Workspace.create(str(tmp_path / "ws"))
    (project,) = ws.search_project(drift.EVIDENTLY_PROJECT)
    (run,) = ws.list_runs(project.id)
    assert any("Evidently workspace" in note for note in result.notes)
    assert "brightness" in json.dumps(ws.get_run(project.id, run).dict(), default=str)


def test_a_class_the_reference_never_predicted_is_drift_with_finite_outputs(images, reference):
    window = _traffic(images, classes=("Earth",))
    records = [dataclasses.replace(r, closest_class="Pluto") for r in window.records]
    result = drift.detect_drift(reference, Window(records=records, objects=1, skipped={}, truncated=False))
    prediction = next(c for c in result.columns if c.column == "prediction")
    assert prediction.drifted and prediction.statistic == float("inf")
    assert "prediction_statistic" not in result.metadata()
    assert all(math.isfinite(v) for v in result.metadata().values())
    json.dumps(result.summary(), allow_nan=False)  # strict JSON for the alert and the webhook
    assert "inf (a class the reference never predicted)" in result.to_markdown()


def test_a_workspace_that_cannot_be_written_is_a_note_not_a_failure(images, reference, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = drift.detect_drift(reference, _traffic(images, "darken"), workspace=str(blocker / "ws"))
    assert result.verdict == drift.DRIFT
    assert any("could not be added to the Evidently workspace" in note for note in result.notes)


def test_a_window_over_max_records_is_sampled_across_its_whole_span(images, reference, tmp_path):
    """Issue 26, defect 2: the reader kept the oldest records, so late drift read as no drift.

    20 quiet hours (30 records each) and 4 busy, darkened hours (150 each) in a 24 h
    window, read with max_records 400: the oldest 400 records are all quiet ones.
    """
    from datetime import timedelta

    from planets_mlops.inbox import open_store
    from planets_mlops.monitoring import records as records_module

    end = WHEN + timedelta(hours=24)
    normal, dark = _traffic(images).records, _traffic(images, "darken").records
    for hour in range(24):
        when = WHEN + timedelta(hours=hour, minutes=10)
        pool, count = (normal, 30) if hour < 20 else (dark, 150)
        batch = [
            dataclasses.replace(pool[(hour * 37 + i) % len(pool)], time=when.isoformat())
            for i in range(count)
        ]
        store = open_store(records_module.partition(str(tmp_path), "m:1", when))
        assert store.put_if_absent(records_module.batch_name(when), records_module.encode_batch(batch))
    params = DriftParams(max_records=400)
    window = records_module.read_window(str(tmp_path), "m:1", WHEN, end, params.max_records)
    result = drift.detect_drift(reference, window, params)
    assert result.verdict == drift.DRIFT, result.reason
    assert window.truncated and window.seen == 20 * 30 + 4 * 150 and len(window.records) == 400
    late = sum(1 for r in window.records if r.time >= (WHEN + timedelta(hours=20)).isoformat())
    assert 150 <= late <= 250, late  # about half: the sample spans the whole window
    assert "brightness" in {c.column for c in result.drifted}
    assert "a uniform sample of the window's 1200 records" in result.to_markdown()
    again = records_module.read_window(str(tmp_path), "m:1", WHEN, end, params.max_records)
    assert again.records == window.records  # seeded by the window: a rerun judges the same sample


def test_a_typo_in_the_records_location_or_the_model_version_is_an_error(images, reference, tmp_path):
    """Issue 26, weak point: an empty window read as "not enough data" forever, whether the
    location or the version had a typo. A window that is empty while the version has
    records elsewhere is still "not enough data"."""
    from datetime import timedelta

    from planets_mlops.errors import NotFoundError
    from planets_mlops.inbox import open_store
    from planets_mlops.monitoring import records as records_module

    model = tmp_path / "model"
    model.mkdir()
    reference.save(model)
    root = str(tmp_path / "records")
    when = WHEN + timedelta(minutes=10)
    batch = [dataclasses.replace(r, time=when.isoformat()) for r in _traffic(images).records[:60]]
    store = open_store(records_module.partition(root, "m:1", when))
    assert store.put_if_absent(records_module.batch_name(when), records_module.encode_batch(batch))
    end = (WHEN + timedelta(hours=1)).isoformat()
    assert drift.check_window(root, model, "m:1", end).verdict != drift.NOT_ENOUGH_DATA
    with pytest.raises(NotFoundError, match=r"No prediction records at all under records_uri=.*recrods"):
        drift.check_window(str(tmp_path / "recrods"), model, "m:1", end)
    with pytest.raises(NotFoundError, match=r"model_version='m:2'.*holds records of: m_1"):
        drift.check_window(root, model, "m:2", end)
    later = (WHEN + timedelta(hours=30)).isoformat()  # the version's records, outside the window
    assert drift.check_window(root, model, "m:1", later).verdict == drift.NOT_ENOUGH_DATA
    # Production's version (the registry's alias or the service's /metadata), deployed and not
    # asked anything yet: not enough data, not an error; the same version named by hand is one.
    for source in ("registry", "service"):
        judged = drift.check_window(root, model, "m:2", end, version_source=source)
        assert judged.verdict == drift.NOT_ENOUGH_DATA
    with pytest.raises(NotFoundError, match=r"model_version='m:2'"):
        drift.check_window(root, model, "m:2", end, version_source="pinned")
    with pytest.raises(NotFoundError, match=r"No prediction records at all"):  # a location typo stays one
        drift.check_window(str(tmp_path / "recrods"), model, "m:2", end, version_source="registry")


def test_the_model_window_labels_every_artifact_and_names_a_wrong_model_uri(images, reference, tmp_path):
    # What the detect_drift component calls: the model folder from its URI, then the window.
    from datetime import timedelta

    from planets_mlops.errors import DataError
    from planets_mlops.inbox import open_store
    from planets_mlops.monitoring import records as records_module

    model = tmp_path / "model"
    model.mkdir()
    reference.save(model)
    root = str(tmp_path / "records")
    when = WHEN + timedelta(minutes=10)
    batch = [dataclasses.replace(r, time=when.isoformat()) for r in _traffic(images).records[:60]]
    store = open_store(records_module.partition(root, "m:1", when))
    assert store.put_if_absent(records_module.batch_name(when), records_module.encode_batch(batch))
    end = (WHEN + timedelta(hours=1)).isoformat()
    result = drift.check_model_window(root, str(model), "m:1", end, DriftParams(window_hours=2))
    assert result.records == 60
    assert result.provenance() == {
        "verdict": result.verdict,
        "model_version": "m:1",
        "window_start": (WHEN - timedelta(hours=1)).isoformat(timespec="seconds"),
        "window_end": (WHEN + timedelta(hours=1)).isoformat(timespec="seconds"),
    }
    with pytest.raises(DataError, match=r"model_uri='.*no-model' is not a folder"):
        drift.check_model_window(root, str(tmp_path / "no-model"), "m:1", end)
