"""The service's side of monitoring: the features' fast path and the record writer."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from planets_mlops.errors import InvalidParameterError
from planets_mlops.inbox import LocalStore
from planets_mlops.knobs import MAX_MONITORING_BATCH, MonitoringParams
from planets_mlops.monitoring import features, records
from planets_mlops.monitoring import writer as mw


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_saturation_equals_the_spread_across_channels(seed: int) -> None:
    images = np.random.default_rng(seed).random((5, 9, 7, 3), dtype=np.float32)
    images[0, 0, 0] = [np.nan, 0.5, 0.2]
    values = features.image_features(images)[:, features.FEATURES.index("saturation")]
    expected = (images.max(axis=-1) - images.min(axis=-1)).mean(axis=(1, 2))
    np.testing.assert_array_equal(values, expected.astype(np.float64))


# ----------------------------------------------------------------------------- the writer

VERSION = "planets-classifier:abc123"
T0 = datetime(2026, 12, 4, 10, 58, tzinfo=UTC)


def _answer(recognised: bool = True) -> dict:
    return {"prediction": "Mars" if recognised else None, "closest_class": "Mars",
            "probabilities": {"Mars": 0.7, "Moon": 0.3}, "recognised": recognised,
            "known_score": 0.8 if recognised else 0.1, "known_threshold": 0.5}  # fmt: skip


def _batch(n: int = 1, seed: int = 0, channels: int = 3) -> tuple[np.ndarray, list[dict], np.ndarray]:
    rng = np.random.default_rng(seed)
    return (
        rng.random((n, 8, 8, channels), dtype=np.float32),
        [_answer(i % 2 == 0) for i in range(n)],
        rng.random((n, 16)),
    )


def _objects(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _wait(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


def test_batches_by_size_then_the_rest_at_close(tmp_path: Path) -> None:
    writer = mw.RecordWriter(str(tmp_path), VERSION, MonitoringParams(batch_records=5, batch_age_s=3600))
    for i in range(12):
        assert writer.offer(*_batch(seed=i), when=T0 + timedelta(seconds=i)) == 1
    assert _wait(lambda: writer.counts["written"] == 10)
    assert writer.stats()["pending"] == 2 and len(_objects(tmp_path)) == 2
    assert writer.close()
    stats = writer.stats()
    assert (stats["accepted"], stats["written"], stats["objects"]) == (12, 12, 3)
    # Whole objects only: no temporary file is left, every line is a valid record.
    assert not [p for p in _objects(tmp_path) if p.name.startswith(".")]
    window = records.read_window(str(tmp_path), VERSION, T0, T0 + timedelta(minutes=1))
    assert len(window.records) == 12 and window.skipped == {}
    assert [r.time for r in window.records] == sorted(r.time for r in window.records)
    assert all(len(r.embedding) == 8 and r.model_version == VERSION for r in window.records)


def test_a_batch_is_written_when_its_first_record_is_old_enough(tmp_path: Path) -> None:
    writer = mw.RecordWriter(str(tmp_path), VERSION, MonitoringParams(batch_records=1000, batch_age_s=0.3))
    writer.offer(*_batch(3))
    assert writer.counts["written"] == 0
    assert _wait(lambda: writer.counts["written"] == 3, timeout=10)
    assert writer.counts["objects"] == 1
    writer.close()


def test_records_equal_those_of_make_records_per_request(tmp_path: Path) -> None:
    """The thread computes features of many requests at once; each record keeps its own time."""
    writer = mw.RecordWriter(str(tmp_path), VERSION, MonitoringParams(batch_records=100, batch_age_s=3600))
    batches = [
        _batch(2, seed=1),
        _batch(1, seed=2),
        _batch(3, seed=3, channels=1),
        (*_batch(1, seed=4)[:2], None),
    ]
    expected = []
    for i, (tensors, answers, embeddings) in enumerate(batches):
        when = T0 + timedelta(milliseconds=10 * i)
        writer.offer(tensors, answers, embeddings, when=when)
        expected += records.make_records(tensors, answers, VERSION, embeddings, when)
    writer.close()
    (only,) = _objects(tmp_path)
    assert records.decode_batch(only.read_bytes()) == expected
    assert mw.record_line(expected[0]) == expected[0].to_line()


def test_partitions_by_hour(tmp_path: Path) -> None:
    writer = mw.RecordWriter(str(tmp_path), VERSION, MonitoringParams(batch_records=100))
    for minutes in (0, 1, 3):  # 10:58, 10:59, 11:01
        writer.offer(*_batch(), when=T0 + timedelta(minutes=minutes))
    writer.close()
    hours = sorted(str(p.parent.relative_to(tmp_path)) for p in _objects(tmp_path))
    assert hours == ["planets-classifier_abc123/2026-12-04/10", "planets-classifier_abc123/2026-12-04/11"]


def test_objects_stay_within_the_readers_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mw, "MAX_OBJECT_BYTES", 3000)
    writer = mw.RecordWriter(str(tmp_path), VERSION, MonitoringParams(batch_records=50))
    writer.offer(*_batch(20))
    writer.close()
    sizes = [p.stat().st_size for p in _objects(tmp_path)]
    assert len(sizes) > 1 and max(sizes) <= 3000 and writer.counts["written"] == 20


class _BlockingStore:
    """A store whose first write waits for ``release``: the writer thread is busy meanwhile."""

    def __init__(self, folder: Path) -> None:
        self.inner = LocalStore(folder)
        self.entered, self.release = threading.Event(), threading.Event()

    def put_if_absent(self, name: str, data: bytes) -> bool:
        self.entered.set()
        assert self.release.wait(10)
        return self.inner.put_if_absent(name, data)


def test_the_queue_is_bounded_and_drops_are_counted(tmp_path: Path) -> None:
    store = _BlockingStore(tmp_path)
    params = MonitoringParams(batch_records=1, queue_images=4)
    writer = mw.RecordWriter(str(tmp_path), VERSION, params, store_factory=lambda _: store)
    writer.offer(*_batch())
    assert store.entered.wait(10)  # the thread holds the first record and waits on the store
    started = time.monotonic()
    accepted = [writer.offer(*_batch(2, seed=i)) for i in range(3)]
    assert time.monotonic() - started < 5  # offers never wait for the store
    assert accepted == [2, 2, 0]
    assert writer.stats()["dropped_queue_full"] == 2 and writer.stats()["queued"] == 4
    store.release.set()
    assert writer.close()
    assert (writer.counts["written"], writer.counts["accepted"]) == (5, 5)


class _FailingStore:
    def put_if_absent(self, name: str, data: bytes) -> bool:
        raise OSError("disk full")


@pytest.mark.parametrize(
    "factory", [lambda _: _FailingStore(), lambda _: (_ for _ in ()).throw(OSError("no bucket"))]
)
def test_a_failing_store_never_raises_into_the_request_path(tmp_path: Path, factory) -> None:
    writer = mw.RecordWriter(str(tmp_path), VERSION, MonitoringParams(batch_records=2), store_factory=factory)
    for i in range(5):
        assert writer.offer(*_batch(seed=i)) == 1
    assert writer.flush(10)
    stats = writer.stats()
    assert stats["write_failed"] == 5 and stats["written"] == 0 and "OSError" in stats["last_error"]
    assert writer.offer(*_batch()) == 1  # still accepting
    assert writer.close()


def test_bad_input_is_counted_never_raised(tmp_path: Path) -> None:
    writer = mw.RecordWriter(str(tmp_path), VERSION)
    tensors, answers, embeddings = _batch(2)
    assert writer.offer(tensors, answers[:1], embeddings) == 1  # 1 answer for 2 images
    assert writer.offer(tensors[:1], answers[:1], np.full((1, 16), np.nan)) == 1
    assert writer.offer(object(), 5) == 0  # type: ignore[arg-type]
    assert writer.offer(*_batch()) == 1
    writer.close()
    stats = writer.stats()
    assert (stats["invalid"], stats["offer_failed"], stats["written"]) == (2, 1, 1)


def test_sampling_keeps_a_share_and_counts_the_rest(tmp_path: Path) -> None:
    writer = mw.RecordWriter(str(tmp_path), VERSION, MonitoringParams(sample=0.25), seed=7)
    for i in range(40):
        writer.offer(*_batch(5, seed=i))
    writer.close()
    stats = writer.stats()
    assert stats["accepted"] + stats["sampled_out"] == 200
    assert 20 < stats["accepted"] < 80 and stats["written"] == stats["accepted"]


def test_close_writes_everything_and_refuses_later_offers(tmp_path: Path) -> None:
    writer = mw.RecordWriter(str(tmp_path), VERSION, MonitoringParams(batch_records=1000, batch_age_s=3600))
    writer.offer(*_batch(7))
    assert writer.close() and writer.counts["written"] == 7
    assert writer.offer(*_batch()) == 0 and writer.counts["dropped_queue_full"] == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [("batch_records", 0), ("batch_records", MAX_MONITORING_BATCH + 1), ("batch_age_s", 0.0),
     ("queue_images", 0), ("sample", 0.0), ("sample", 1.5)],
)  # fmt: skip
def test_bad_settings_are_refused_with_their_name(tmp_path: Path, field: str, value: float) -> None:
    with pytest.raises(InvalidParameterError, match=field):
        MonitoringParams(**{field: value})
