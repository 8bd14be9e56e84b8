"""The ``monitoring`` pipeline under kfp.local on records made from real images by a real model.

A small model is trained for real (3 classes x 150 images), which writes the reference
profile of its validation images; those images, run through the service's path (preprocess, ONNX model, guard,
records), its in-distribution traffic. The drift case darkens them, notifies a real
webhook server on 127.0.0.1 and starts a retraining run. The Kubeflow backend cannot run
here, so the retraining run goes to tests/support/fake_kfp_api.py, a fake of the KFP REST API (the
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
from tests.support.fake_kfp_api import NOW, FakeKfpState, serve_fake_kfp

WHEN = datetime(2026, 12, 4, 9, 30, tzinfo=UTC)
VERSION = "planets-classifier:monitoring-test"


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
    assert run.tasks["detect-drift"].parameters["drift_verdict"] == "no drift"
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
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
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
    assert run.tasks["detect-drift"].parameters["drift_verdict"] == "drift"
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
    assert actions["start_retraining"]["outcome"].startswith(f"run {submitted['run_id']} (retraining-")
    assert "brightness" in actions["start_retraining"]["why"]
    assert submitted["pipeline_version_reference"] == {"pipeline_id": "p1", "pipeline_version_id": "v1"}
    assert submitted["runtime_config"]["parameters"]["data_repo_url"] == "https://example.invalid/data.git"
    (posted,) = received
    assert posted["summary"]["verdict"] == "drift" and VERSION in posted["text"]
    assert run.tasks["raise-alert"].parameters["outcome"] == decision["decision"]


@pytest.mark.parametrize("shift", ["rotate", "class mix"])
def test_rotated_or_one_class_traffic_gives_a_drift_verdict_and_an_alert(monitored, tmp_path, shift):
    # The other two shifts of the drift benchmark, through the whole pipeline, no action asked for.
    from planets_mlops.app.dev import traffic

    if shift == "rotate":
        _records(monitored, tmp_path / "records", "rotate")
    else:
        # Extra images (never seen in training) of one of the model's three classes only.
        extra = Path(__file__).resolve().parents[2] / "data" / "planets" / "extra"
        images = [p.read_bytes() for p in traffic.extra_images(extra, ["Moon"])]
        assert len(images) >= 50
        records = traffic.model_records(monitored["runner"], images, VERSION, WHEN)
        traffic.write_records(str(tmp_path / "records"), records)
    run = _run(monitored, tmp_path)
    assert run.tasks["detect-drift"].parameters["drift_verdict"] == "drift"
    metrics = run.metadata("detect-drift", "metrics")
    assert metrics["drift"] == 1.0 and metrics["drifted_columns"] >= 1
    if shift == "class mix":
        assert metrics["prediction_p_value"] < metrics["p_value_threshold"]
    alert = run.artifact("raise-alert", "alert").read_text()
    assert alert.startswith("# Drift alert") and VERSION in alert
    decision = json.loads(run.artifact("raise-alert", "decision").read_text())
    assert not any(action["taken"] for action in decision["actions"])


# ---------------------------------- the loop on a cluster (issue 22), under kfp.local


def _retraining_uploaded() -> FakeKfpState:
    state = FakeKfpState()
    state.pipelines["p1"] = {"pipeline_id": "p1", "display_name": "planets-retraining", "created_at": NOW}
    state.versions["v1"] = {"pipeline_id": "p1", "pipeline_version_id": "v1", "display_name": "0.1.0-abc",
                            "created_at": NOW, "pipeline_spec": {}}  # fmt: skip
    return state


def test_two_drift_verdicts_in_a_row_start_exactly_one_retraining(
    monitored, tmp_path, data_repo, monkeypatch
):
    # One drift episode seen by two hourly runs: the first starts a retraining (to the fake
    # KFP API: no Kubeflow backend here), the second finds it by its key and skips.
    from planets_mlops.data_source import data_version

    arguments = {"data_repo_url": str(data_repo["repo"]), "data_rev": "v1", "label_studio_project": "p"}
    monkeypatch.setenv("KFP_RUN_SERVICE_ACCOUNT", "planets-pipeline-runner")  # the downward API's
    decisions = []
    with serve_fake_kfp(_retraining_uploaded()) as (kfp_url, state):
        monkeypatch.setenv("KFP_HOST", kfp_url)
        for hour in (1, 2):
            _records(monitored, tmp_path / f"hour-{hour}" / "records", "darken")
            run = _run(
                monitored, tmp_path / f"hour-{hour}", start_retraining=True, retraining_arguments=arguments
            )
            assert run.tasks["detect-drift"].parameters["drift_verdict"] == "drift"
            decisions.append(json.loads(run.artifact("raise-alert", "decision").read_text()))
    (started,) = state.runs.values()  # exactly one retraining
    first, second = ({a["action"]: a for a in d["actions"]}["start_retraining"] for d in decisions)
    assert first["taken"] and first["outcome"].startswith(f"run {started['run_id']}")
    assert not second["taken"] and not second["failed"] and f"run {started['run_id']}" in second["why"]
    key = decisions[0]["trigger"]
    assert key == decisions[1]["trigger"] and started["display_name"].startswith(f"retraining-{key['key']}-")
    # Keyed by the data's real DVC hash and the production version judged.
    assert key["data"] == data_version(str(data_repo["repo"]), "v1", "data/raw")[1] and not key["data_error"]
    assert key["production"] == VERSION
    assert started["service_account"] == "planets-pipeline-runner"
    assert started["runtime_config"]["parameters"] == arguments


def test_a_monitoring_run_after_a_promotion_reads_the_new_versions_records(
    monitored, tmp_path, mlflow_client, model_name
):
    # Nothing names a model version: each run asks the real MLflow registry which version
    # production is, and reads the records the service wrote under that version's model tag.
    from planets_mlops.app.dev import traffic
    from planets_mlops.knobs import RegistryParams
    from planets_mlops.registry import registry as reg
    from planets_mlops.registry.steps import promote_registered

    old, new = "planets-classifier:before", "planets-classifier:after"
    # The old model's traffic looks like its training data; the new one's is darkened.
    for tag, shift in ((old, "none"), (new, "darken")):
        shifted = [traffic.shift_image(data, shift) for data in monitored["images"]]
        records = traffic.model_records(monitored["runner"], shifted, tag, WHEN)
        traffic.write_records(str(tmp_path / "records"), records)
    params = RegistryParams(tracking=True, model_name=model_name)
    experiment = mlflow_client.create_experiment(model_name)

    def promote(tag: str, expected: str) -> str:
        run_id = mlflow_client.create_run(experiment).info.run_id
        version = reg.register_version(mlflow_client, model_name, run_id, {})
        moved = promote_registered(
            params, registered={"version": version}, expected_version=expected, why="test",
            bento_tag=f"bento:{tag}", bento_uri="gs://b/x.bento", kfp_run_id="k",
            model_tag=tag, model_uri=str(monitored["model"]),
        )  # fmt: skip
        assert moved.moved
        return version

    def monitor(name: str):
        return run_local(
            monitoring, tmp_path / name, log_file=tmp_path / f"{name}.log",
            records_uri=str(tmp_path / "records"), tracking=True, registered_model_name=model_name,
            window_end=(WHEN + timedelta(minutes=30)).isoformat(), window_hours=2,
        )  # fmt: skip

    from planets_mlops.pipelines.monitoring import monitoring

    first_version = promote(old, "")
    before = monitor("before")
    assert before.tasks["resolve-production"].parameters["registry_version"] == first_version
    assert before.tasks["detect-drift"].parameters["drift_verdict"] == "no drift"
    assert old in before.artifact("detect-drift", "verdict").read_text()
    second_version = promote(new, first_version)
    after = monitor("after")
    assert after.tasks["resolve-production"].parameters["registry_version"] == second_version
    assert after.tasks["detect-drift"].parameters["drift_verdict"] == "drift"
    assert after.metadata("detect-drift", "metrics")["records"] == len(monitored["images"])
    verdict = after.artifact("detect-drift", "verdict").read_text()
    assert new in verdict and old not in verdict
    assert new in after.artifact("raise-alert", "alert").read_text()
