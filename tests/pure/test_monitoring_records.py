"""Monitoring contract: image features, the embedding projection, records and the reference profile."""

import json
from collections import Counter
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from planets_mlops.errors import DataError, InvalidParameterError, NotFoundError
from planets_mlops.monitoring import features, records, reference


def _images(n=4, seed=0, size=16):
    return np.random.default_rng(seed).random((n, size, size, 3), dtype=np.float32)


def test_features_are_deterministic_named_and_react_to_shifts():
    images = _images()
    values = features.image_features(images)
    assert values.shape == (4, len(features.FEATURES))
    np.testing.assert_array_equal(values, features.image_features(images))
    column = {name: values[:, i] for i, name in enumerate(features.FEATURES)}
    darker = features.image_features(images * 0.3)
    assert np.all(darker[:, features.FEATURES.index("brightness")] < column["brightness"])
    assert np.all(darker[:, features.FEATURES.index("dark_fraction")] > column["dark_fraction"])
    gray = features.image_features(images[..., :1])
    assert np.all(gray[:, features.FEATURES.index("saturation")] == 0)


def test_rotation_moves_orientation_and_centroid():
    image = np.zeros((1, 20, 20, 3), dtype=np.float32)
    image[0, 2:6, :, :] = 1.0  # a bright horizontal band near the top
    before = features.image_features(image)[0]
    after = features.image_features(np.rot90(image, k=1, axes=(1, 2)))[0]
    index = features.FEATURES.index
    assert before[index("centroid_y")] < 0.3 < after[index("centroid_y")]
    assert before[index("horizontal_energy")] < 0.5 < after[index("horizontal_energy")]


def test_features_refuse_wrong_shapes():
    with pytest.raises(DataError, match=r"shape \(4, 4\)"):
        features.image_features(np.zeros((4, 4)))


def test_projection_is_fixed_by_size_and_scale_free():
    embeddings = np.random.default_rng(1).random((5, 32))
    once = features.project_embeddings(embeddings)
    np.testing.assert_allclose(once, features.project_embeddings(embeddings * 7.0))
    assert once.shape == (5, features.PROJECTION_DIM)
    np.testing.assert_array_equal(features.projection_matrix(32), features.projection_matrix(32))
    assert np.all(features.project_embeddings(np.zeros((2, 32))) == 0)
    with pytest.raises(DataError, match="NaN"):
        features.project_embeddings(np.full((1, 32), np.nan))


def _answers(n):
    return [
        {"prediction": "Mars", "closest_class": "Mars", "probabilities": {"Mars": 0.9, "Moon": 0.1},
         "recognised": True, "known_score": 0.8, "known_threshold": 0.5}
        for _ in range(n)
    ]  # fmt: skip


def test_records_round_trip_and_skip_bad_lines():
    when = datetime(2026, 12, 4, 10, 30, tzinfo=UTC)
    made = records.make_records(_images(3), _answers(3), "planets-classifier:abc", np.ones((3, 16)), when)
    assert [r.score for r in made] == [0.9, 0.9, 0.9]
    data = records.encode_batch(made) + b"{broken\n" + json.dumps({"format": "other"}).encode() + b"\n"
    skipped = Counter()
    assert records.decode_batch(data, skipped) == made
    assert skipped == {"not JSON": 1, "not a planets-predictions/1 record": 1}


def test_partition_names_are_safe_and_hourly():
    when = datetime(2026, 12, 4, 9, 59, tzinfo=UTC)
    assert records.partition("gs://b/p/", "planets-classifier:abc", when) == (
        "gs://b/p/planets-classifier_abc/2026-12-04/09"
    )
    assert records.version_segment("../../etc") == ".._.._etc"
    with pytest.raises(InvalidParameterError, match="model_version"):
        records.version_segment("..")
    hours = records.hours(when, when + timedelta(minutes=2))
    assert [h.hour for h in hours] == [9, 10]
    with pytest.raises(InvalidParameterError, match="window"):
        records.hours(when, when)


def test_read_window_filters_time_and_bounds_records(tmp_path):
    from planets_mlops.inbox import open_store

    start = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
    for minutes in (5, 70, 200):
        when = start + timedelta(minutes=minutes)
        batch = records.make_records(_images(2), _answers(2), "m:1", None, when)
        store = open_store(records.partition(str(tmp_path), "m:1", when))
        assert store.put_if_absent(records.batch_name(when), records.encode_batch(batch))
    (tmp_path / "m_1" / "2026-12-04" / "10" / "junk.jsonl").write_bytes(b"\x00\xff\n")
    window = records.read_window(str(tmp_path), "m:1", start, start + timedelta(hours=2))
    assert len(window.records) == 4 and window.objects == 3 and not window.truncated
    assert window.skipped == {"not JSON": 1}
    assert window.features().shape == (4, len(features.FEATURES))
    assert window.embeddings().shape == (0, features.PROJECTION_DIM)
    capped = records.read_window(str(tmp_path), "m:1", start, start + timedelta(hours=4), max_records=3)
    assert capped.truncated and len(capped.records) == 3


def test_reference_profile_round_trip_and_refusals(tmp_path):
    profile = reference.build_reference(_images(6), ["Mars"] * 4 + ["Moon"] * 2, ["Mars", "Moon", "Pluto"],
                                        np.random.default_rng(2).random((6, 16)))  # fmt: skip
    assert profile.prediction_shares() == pytest.approx({"Mars": 4 / 6, "Moon": 2 / 6, "Pluto": 0.0})
    profile.save(tmp_path)
    loaded = reference.load_reference(tmp_path)
    np.testing.assert_allclose(loaded.features, profile.features, atol=1e-6)
    np.testing.assert_allclose(loaded.embeddings, profile.embeddings, atol=1e-6)
    assert loaded.predictions == profile.predictions
    sampled = reference.build_reference(_images(6), ["Mars"] * 6, ["Mars"], max_rows=3)
    assert sampled.count == 3 and sampled.embeddings.shape == (3, 0)
    with pytest.raises(NotFoundError, match="no monitoring reference"):
        reference.load_reference(tmp_path / "missing")
    (tmp_path / reference.REFERENCE_FILE).write_text(
        json.dumps({"format": reference.FORMAT, "features": ["x"]})
    )
    with pytest.raises(DataError, match="other features"):
        reference.load_reference(tmp_path)


HOSTILE_LINES = {
    "deep nesting": b"[" * 7000 + b"]" * 7000,
    "deep record": b'{"format": "planets-predictions/1", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    "400-digit number": b'{"format": "planets-predictions/1", "score": ' + b"9" * 400 + b"}",
    "huge float": b'{"format": "planets-predictions/1", "score": 1e400}',
}


def test_hostile_record_lines_are_skipped_and_counted_not_a_crash(tmp_path):
    """Issue 26, defect 4: one hostile JSON line crashed the readers that skip and count."""
    from planets_mlops.inbox import open_store

    when = datetime(2026, 12, 4, 10, 30, tzinfo=UTC)
    made = records.make_records(_images(2), _answers(2), "m:1", None, when)
    line = json.loads(made[0].to_line())
    edge = dict(line, time="0001-01-01T00:00:00+01:00")  # leaves the calendar in UTC
    big = json.dumps(dict(line, score=10**400)).encode()  # 400 digits: float() overflows
    data = b"\n".join([*HOSTILE_LINES.values(), json.dumps(edge).encode(), big, records.encode_batch(made)])
    skipped = Counter()
    assert records.decode_batch(data, skipped) == made
    assert skipped == {
        "JSON nested too deep": 2,
        "JSON number out of range": 3,
        "record time is not an ISO-8601 time within the calendar": 1,
    }
    store = open_store(records.partition(str(tmp_path), "m:1", when))
    store.put_if_absent(records.batch_name(when), data)
    window = records.read_window(str(tmp_path), "m:1", when - timedelta(hours=1), when + timedelta(hours=1))
    assert window.records == made and sum(window.skipped.values()) == 6


@pytest.mark.parametrize("case", sorted(HOSTILE_LINES))
def test_hostile_reference_and_summary_files_are_refused_by_name(tmp_path, case):
    """Issue 26, defect 4: the reference profile and the drift summary readers had the same gap."""
    from planets_mlops.monitoring.alert import load_summary

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / reference.REFERENCE_FILE).write_bytes(HOSTILE_LINES[case])
    with pytest.raises(DataError, match=reference.REFERENCE_FILE):
        reference.load_reference(folder)
    summary = tmp_path / "summary.json"
    summary.write_bytes(HOSTILE_LINES[case])
    with pytest.raises(DataError, match="summary"):
        load_summary(summary)
