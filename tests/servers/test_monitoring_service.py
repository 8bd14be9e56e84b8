"""Prediction records of the real served bento: what lands in the store, and what a restart loses.

The session's ``bento_server`` (tests/support/fixtures/serving.py) records every prediction into a
local folder; the restart test runs its own server (it has to kill one) with batches of 5
records that never age, so that only the batch size and the shutdown decide what is written.
The gs:// writer test runs against the GCS emulator.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from planets_mlops.monitoring import features, records
from planets_mlops.preprocess import PreprocessConfig, preprocess_image
from tests.support.fixtures.data import PLANETS

EXTRA = sorted((PLANETS / "extra").glob("*.jpg"))


def _all_records(root: Path, version: str, since: datetime) -> list[records.PredictionRecord]:
    window = records.read_window(
        str(root), version, since - timedelta(seconds=1), datetime.now(UTC) + timedelta(hours=1)
    )
    assert window.skipped == {} and not window.truncated
    return [r for r in window.records if records.parse_time(r.time) >= since]


def _wait_for(condition, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return bool(condition())


def test_predictions_produce_records_in_the_store(
    http: Any, packaged_bento: dict[str, Any], monitoring_store: Path
) -> None:
    from planets_mlops.model_folder import predict_outputs

    before = http.get("/metadata").json()["monitoring"]
    assert before["uri"] == str(monitoring_store) and before["sample"] == 1.0
    since = datetime.now(UTC).replace(microsecond=0)
    time.sleep(0.01)
    paths = EXTRA[10:15]
    answers = [http.post("/predict", files={"image": (p.name, p.read_bytes())}).json() for p in paths[:3]]
    response = http.post("/predict_batch", files=[("image", (p.name, p.read_bytes())) for p in paths[3:]])
    answers += response.json()["predictions"]
    version = packaged_bento["model_tag"]
    assert _wait_for(lambda: http.get("/metadata").json()["monitoring"]["written"] >= before["accepted"] + 5)
    after = http.get("/metadata").json()["monitoring"]
    assert after["accepted"] == before["accepted"] + 5
    assert after["dropped_queue_full"] == after["write_failed"] == after["invalid"] == 0
    got = _all_records(monitoring_store, version, since)
    assert len(got) == 5
    # The record is what the service saw and answered: the model-input tensor's features, the
    # projected guard embedding, the answer, and never the image.
    model_dir = packaged_bento["model_dir"]
    config = PreprocessConfig.from_dict(json.loads((model_dir / "preprocess.json").read_text()))
    tensors = np.stack([preprocess_image(p.read_bytes(), config) for p in paths])
    _, embeddings = predict_outputs(model_dir, tensors)
    by_time = sorted(got, key=lambda r: r.time)
    for record, answer, expected_features, expected_embedding in zip(
        by_time, answers, features.image_features(tensors), features.project_embeddings(embeddings)
    ):
        assert record.model_version == version
        assert (record.prediction, record.closest_class, record.recognised) == (
            answer["prediction"], answer["closest_class"], answer["recognised"]
        )  # fmt: skip
        assert record.score == pytest.approx(max(answer["probabilities"].values()))
        assert record.known_score == pytest.approx(answer["known_score"])
        np.testing.assert_allclose(
            [record.features[n] for n in features.FEATURES], expected_features, atol=1e-6
        )
        np.testing.assert_allclose(record.embedding, expected_embedding, atol=1e-4)
    # Layout: <root>/<version>/<day>/<hour>/<batch>.jsonl, and no image bytes anywhere.
    objects = [p for p in monitoring_store.rglob("*") if p.is_file()]
    assert objects and all(
        p.suffix == records.SUFFIX and len(p.relative_to(monitoring_store).parts) == 4 for p in objects
    )
    assert not any(b"\xff\xd8\xff" in p.read_bytes() for p in objects)


def _kill_tree(server: Any) -> None:
    from planets_mlops.app.dev.serve_local import process_tree

    for pid in process_tree(server.process.pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    server.process.wait(timeout=10)


def test_a_restart_loses_at_most_the_unwritten_batch(packaged_bento: dict[str, Any], tmp_path: Path) -> None:
    """SIGTERM writes everything; SIGKILL loses only the batch not yet full (fewer than 5 records)."""
    import httpx

    from planets_mlops.app.dev.serve_local import serve_bento, stop_server

    store = tmp_path / "records"
    env = {
        "PLANETS_WORKERS": "1",
        "PLANETS_MONITORING_URI": str(store),
        "PLANETS_MONITORING_BATCH_RECORDS": "5",
        "PLANETS_MONITORING_BATCH_AGE_S": "3600",
    }
    version = packaged_bento["model_tag"]
    since = datetime.now(UTC).replace(microsecond=0)

    def send(url: str, count: int) -> None:
        with httpx.Client(base_url=url, timeout=30, trust_env=False) as client:
            for path in EXTRA[:count]:
                assert (
                    client.post("/predict", files={"image": (path.name, path.read_bytes())}).status_code
                    == 200
                )

    home = tmp_path / "bentoml"
    with serve_bento(packaged_bento["archive"], env=env, home=home, ready_timeout=90) as server:
        send(server.url, 7)
        assert _wait_for(lambda: len(_all_records(store, version, since)) == 5)
        stop_server(server)  # SIGTERM: the shutdown hook writes the last 2
        assert server.process.returncode is not None
    assert len(_all_records(store, version, since)) == 7

    with serve_bento(packaged_bento["archive"], env=env, home=home, ready_timeout=90) as server:
        send(server.url, 12)
        assert _wait_for(lambda: len(_all_records(store, version, since)) == 7 + 10)
        _kill_tree(server)  # SIGKILL: the 2 records of the batch being filled are lost
    time.sleep(0.5)
    assert len(_all_records(store, version, since)) == 17


def test_the_writer_writes_gs_objects_on_the_emulator(gcs_emulator: Any) -> None:
    from planets_mlops.monitoring.writer import RecordWriter

    bucket = gcs_emulator.make_bucket("planets-monitoring")
    root = f"{bucket}/serving/records"
    when = datetime(2026, 12, 4, 10, 59, 59, tzinfo=UTC)
    writer = RecordWriter(root, "planets-classifier:gcs1")
    rng = np.random.default_rng(0)
    answer = {"prediction": "Mars", "closest_class": "Mars", "probabilities": {"Mars": 0.6, "Moon": 0.4}}
    writer.offer(rng.random((3, 8, 8, 3), dtype=np.float32), [answer] * 3, None, when)
    writer.offer(rng.random((2, 8, 8, 3), dtype=np.float32), [answer] * 2, None, when + timedelta(seconds=2))
    assert writer.close()
    assert writer.stats()["written"] == 5 and writer.stats()["objects"] == 2  # one per hour
    window = records.read_window(root, "planets-classifier:gcs1", when, when + timedelta(minutes=1))
    assert len(window.records) == 5 and window.objects == 2 and window.skipped == {}


def test_the_served_model_writes_its_records_to_gs(packaged_bento: dict[str, Any], gcs_emulator: Any) -> None:
    """``PLANETS_MONITORING_URI=gs://...`` on a real server: the records land in the bucket (emulator)."""
    import httpx

    from planets_mlops.app.dev.serve_local import serve_bento

    root = f"{gcs_emulator.make_bucket('planets-served-records')}/monitoring"
    env = {"PLANETS_WORKERS": "1", "PLANETS_MONITORING_URI": root}
    since = datetime.now(UTC).replace(microsecond=0)
    with serve_bento(packaged_bento["archive"], env=env, ready_timeout=90) as server:
        with httpx.Client(base_url=server.url, timeout=30, trust_env=False) as client:
            for path in EXTRA[:3]:
                assert (
                    client.post("/predict", files={"image": (path.name, path.read_bytes())}).status_code
                    == 200
                )
            assert client.get("/metadata").json()["monitoring"]["accepted"] == 3
    # Stopped with SIGTERM: the batch (3 records, far from full or old) was written at shutdown.
    window = records.read_window(
        root, packaged_bento["model_tag"], since - timedelta(seconds=1), datetime.now(UTC)
    )
    assert len(window.records) == 3 and window.objects == 1 and window.skipped == {}
    assert {r.model_version for r in window.records} == {packaged_bento["model_tag"]}
