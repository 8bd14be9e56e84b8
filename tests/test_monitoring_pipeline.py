"""The ``monitoring`` pipeline under kfp.local on records made from real images by a real model.

A small model is trained for real (3 classes x 150 images), which writes the reference
profile of its validation images; those images, run through the service's path (preprocess, ONNX model, guard,
records), its in-distribution traffic. The drift case darkens them, notifies a real
webhook server on 127.0.0.1 and starts a retraining run. The Kubeflow backend cannot run
here, so the retraining run goes to tests/fake_kfp_api.py, a fake of the KFP REST API (the
only mocked part).
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from planets_mlops.app.local import run_local
from tests.fake_kfp_api import NOW, FakeKfpState, serve_fake_kfp
from tests.fixtures.data import SMALL_CLASSES, copy_subset

pytestmark = pytest.mark.pipeline

WHEN = datetime(2026, 12, 4, 9, 30, tzinfo=UTC)
VERSION = "planets-classifier:monitoring-test"


@pytest.fixture(scope="module")
def monitored(tmp_path_factory):
    """A model trained on 3 classes x 150 images, its reference saved beside it, and its validation images."""
    from planets_mlops.app.dev import traffic
    from planets_mlops.knobs import PrepareParams, TrainParams
    from planets_mlops.monitoring.reference import has_reference
    from planets_mlops.prepare import load_manifest, prepare_dataset
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


def _records(monitored, root: Path, shift: str) -> None:
    from planets_mlops.app.dev import traffic

    shifted = [traffic.shift_image(data, shift) for data in monitored["images"]]
    traffic.write_records(str(root), traffic.model_records(monitored["runner"], shifted, VERSION, WHEN))


def _run(monitored, tmp_path, **arguments):
    from planets_mlops.pipelines.monitoring import monitoring

    return run_local(
        monitoring,
        tmp_path / "root",
        log_file=tmp_path / "run.log",
        records_uri=str(tmp_path / "records"),
        model_uri=str(monitored["model"]),
        model_version=VERSION,
        window_end=(WHEN + timedelta(minutes=30)).isoformat(),
        window_hours=2,
        **arguments,
    )


def test_in_distribution_traffic_raises_no_alarm(monitored, tmp_path):
    _records(monitored, tmp_path / "records", "none")
    run = _run(monitored, tmp_path, notify=True, start_retraining=True)
    assert run.tasks["detect-drift"].parameters["Output"] == "no drift"
    assert "raise-alert" not in run.tasks  # the alert step is gated on drift
    metrics = run.metadata("detect-drift", "metrics")
    assert metrics["records"] == len(monitored["images"]) == 90
    assert metrics["drift"] == 0.0 and metrics["drifted_columns"] == 0.0
    assert metrics["brightness_p_value"] > metrics["p_value_threshold"]
    verdict = run.artifact("detect-drift", "verdict").read_text()
    assert "**NO DRIFT**" in verdict and VERSION in verdict
    assert run.artifact("detect-drift", "report").read_text().lstrip().lower().startswith("<!doctype html>")


class _Webhook(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    _Webhook.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Webhook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", _Webhook.received
    server.shutdown()
    server.server_close()


def test_darkened_traffic_raises_an_alert_notifies_and_starts_retraining(
    monitored, tmp_path, webhook, monkeypatch
):
    url, received = webhook
    _records(monitored, tmp_path / "records", "darken")
    state = FakeKfpState()
    state.pipelines["p1"] = {"pipeline_id": "p1", "display_name": "planets-retraining", "created_at": NOW}
    state.versions["v1"] = {"pipeline_id": "p1", "pipeline_version_id": "v1", "display_name": "0.1.0-abc",
                            "created_at": NOW, "pipeline_spec": {}}  # fmt: skip
    with serve_fake_kfp(state) as (kfp_url, state):
        monkeypatch.setenv("KFP_HOST", kfp_url)
        monkeypatch.setenv("MONITORING_WEBHOOK_URL", url)
        run = _run(
            monitored,
            tmp_path,
            notify=True,
            start_retraining=True,
            retraining_arguments={
                "data_repo_url": "https://example.invalid/data.git",
                "label_studio_project": "p",
            },
        )
    assert run.tasks["detect-drift"].parameters["Output"] == "drift"
    metrics = run.metadata("detect-drift", "metrics")
    assert metrics["drift"] == 1.0 and metrics["brightness_p_value"] < metrics["p_value_threshold"]
    alert = run.artifact("raise-alert", "alert").read_text()
    assert alert.startswith("# Drift alert") and VERSION in alert
    assert "2026-12-04T08:00:00+00:00 to 2026-12-04T10:00:00+00:00" in alert
    assert "| image | brightness |" in alert and "**yes**" in alert
    decision = json.loads(run.artifact("raise-alert", "decision").read_text())
    actions = {a["action"]: a for a in decision["actions"]}
    assert actions["notify"]["taken"] and actions["notify"]["outcome"] == "HTTP 204"
    assert (
        not actions["push_to_label_studio"]["taken"] and "is false" in actions["push_to_label_studio"]["why"]
    )
    (submitted,) = state.runs.values()
    assert actions["start_retraining"]["outcome"] == f"run {submitted['run_id']}"
    assert "brightness" in actions["start_retraining"]["why"]
    assert submitted["pipeline_version_reference"] == {"pipeline_id": "p1", "pipeline_version_id": "v1"}
    assert submitted["runtime_config"]["parameters"]["data_repo_url"] == "https://example.invalid/data.git"
    (posted,) = received
    assert posted["summary"]["verdict"] == "drift" and VERSION in posted["text"]
    assert run.tasks["raise-alert"].parameters["Output"] == decision["decision"]


@pytest.mark.servers
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


@pytest.mark.parametrize("shift", ["rotate", "class mix"])
def test_rotated_or_one_class_traffic_gives_a_drift_verdict_and_an_alert(monitored, tmp_path, shift):
    # The other two shifts of the drift benchmark, through the whole pipeline, no action asked for.
    from planets_mlops.app.dev import traffic

    if shift == "rotate":
        _records(monitored, tmp_path / "records", "rotate")
    else:
        # Extra images (never seen in training) of one of the model's three classes only.
        extra = Path(__file__).resolve().parents[1] / "data" / "planets" / "extra"
        images = [p.read_bytes() for p in traffic.extra_images(extra, ["Moon"])]
        assert len(images) >= 50
        records = traffic.model_records(monitored["runner"], images, VERSION, WHEN)
        traffic.write_records(str(tmp_path / "records"), records)
    run = _run(monitored, tmp_path)
    assert run.tasks["detect-drift"].parameters["Output"] == "drift"
    metrics = run.metadata("detect-drift", "metrics")
    assert metrics["drift"] == 1.0 and metrics["drifted_columns"] >= 1
    if shift == "class mix":
        assert metrics["prediction_p_value"] < metrics["p_value_threshold"]
    alert = run.artifact("raise-alert", "alert").read_text()
    assert alert.startswith("# Drift alert") and VERSION in alert
    decision = json.loads(run.artifact("raise-alert", "decision").read_text())
    assert not any(action["taken"] for action in decision["actions"])
