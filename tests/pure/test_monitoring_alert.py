"""The drift alert and its actions (planets_mlops.monitoring.alert), without a pipeline.

The retraining action talks to tests/support/fake_kfp_api.py, a fake of the KFP REST API: no
Kubeflow backend runs here. Everything else is real (files, the window bounds, errors).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from planets_mlops.errors import DataError, InvalidParameterError, NotFoundError, PlanetsError
from planets_mlops.knobs import AlertParams, DriftParams
from planets_mlops.monitoring import alert, drift
from tests.support.fake_kfp_api import NOW, FakeKfpState, serve_fake_kfp


def _summary(verdict=drift.DRIFT):
    columns = [
        drift.ColumnDrift("brightness", "image", "ks", 0.9, 1e-12, True),
        drift.ColumnDrift("prediction", "prediction", "chisquare", 1.0, 0.4, False),
    ]
    info = drift.WindowInfo(
        "m:1", "2026-12-04T08:00:00+00:00", "2026-12-04T10:00:00+00:00", 2, {"not JSON": 1}
    )
    result = drift.DriftResult(verdict, "why", 120, 300, 0.0005, columns, [], DriftParams(), info)
    return result.summary()


def test_only_drift_triggers_actions_and_each_action_says_why():
    quiet = alert.raise_alert(_summary(drift.NO_DRIFT), AlertParams(notify=True), notify=lambda: "HTTP 200")
    assert [a.taken for a in quiet.actions] == [False, False, False]
    assert "'no drift', not drift" in quiet.actions[0].why

    def broken() -> str:
        raise PlanetsError("the webhook answered HTTP 500")

    loud = alert.raise_alert(
        _summary(), AlertParams(notify=True, start_retraining=True, push_to_label_studio=True), notify=broken,
        retrain=lambda: "run r-1",
    )  # fmt: skip
    actions = {a.action: a for a in loud.actions}
    assert actions["notify"].failed and "HTTP 500" in actions["notify"].outcome
    assert (
        actions["start_retraining"].outcome == "run r-1"
        and "brightness p=1e-12" in actions["start_retraining"].why
    )
    assert (
        actions["push_to_label_studio"].failed and "inbox_uri is empty" in actions["push_to_label_studio"].why
    )
    text = loud.to_markdown()
    assert text.startswith("# Drift alert") and "m:1" in text and "2026-12-04T08:00:00+00:00" in text
    assert "1 not JSON" in text and "| notify | yes |" in text
    assert "start_retraining: run r-1" in loud.decision()


def test_the_summary_file_is_checked(tmp_path):
    path = tmp_path / "summary.json"
    with pytest.raises(DataError, match="does not exist"):
        alert.load_summary(path)
    path.write_text(json.dumps({"format": "other"}))
    with pytest.raises(DataError, match="planets-drift/1"):
        alert.load_summary(path)
    path.write_text(json.dumps(_summary()))
    assert alert.load_summary(path)["verdict"] == drift.DRIFT


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://host/x", "not a url"])
def test_the_webhook_must_be_http(url):
    with pytest.raises(InvalidParameterError, match="MONITORING_WEBHOOK_URL"):
        alert.post_webhook(url, {}, 1.0)


def test_window_end_is_checked_and_defaults_to_now():
    now = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
    start, end = drift.window_bounds("", 2, now)
    assert (start.hour, end) == (8, now)
    assert drift.window_bounds("2026-12-04T10:00:00Z", 1)[0].hour == 9
    with pytest.raises(InvalidParameterError, match="Invalid window_end='yesterday'"):
        drift.window_bounds("yesterday", 1)


def test_a_retraining_run_is_submitted_to_the_newest_version():
    state = FakeKfpState(token="t0k")
    state.pipelines["p1"] = {"pipeline_id": "p1", "display_name": "retraining", "created_at": NOW}
    for vid, created in (("v1", "2026-11-01T00:00:00Z"), ("v2", "2026-11-02T00:00:00Z")):
        state.versions[vid] = {"pipeline_id": "p1", "pipeline_version_id": vid, "display_name": vid,
                               "created_at": created, "pipeline_spec": {}}  # fmt: skip
    with serve_fake_kfp(state) as (url, state):
        api = alert.KfpApi(url, "t0k")
        run_id = api.start_run("retraining", "", "monitoring", {"data_repo_url": "x"}, "on-drift")
        assert api.start_run("retraining", "v1", "monitoring", {}, "pinned") != run_id
        with pytest.raises(NotFoundError, match="no version 'v9'"):
            api.start_run("retraining", "v9", "monitoring", {}, "x")
        with pytest.raises(NotFoundError, match="not uploaded"):
            api.start_run("training", "", "monitoring", {}, "x")
        with pytest.raises(PlanetsError, match="HTTP 401"):
            alert.KfpApi(url, "wrong").start_run("retraining", "", "monitoring", {}, "x")
    first, second = (state.runs[r] for r in sorted(state.runs))
    assert first["pipeline_version_reference"]["pipeline_version_id"] == "v2"
    assert second["pipeline_version_reference"]["pipeline_version_id"] == "v1"
    assert first["runtime_config"]["parameters"] == {"data_repo_url": "x"}
    assert len(state.experiments) == 1  # made once, then found by name


# ------------------------------------------------- runs the alert starts (issue 22)


def _retraining_pipeline(state, versions):
    state.pipelines["p1"] = {"pipeline_id": "p1", "display_name": "planets-retraining", "created_at": NOW}
    for i, name in enumerate(versions):
        created = f"2026-11-{1 + i // 24:02d}T{i % 24:02d}:00:00Z"
        vid = f"v{i:03d}"
        state.versions[vid] = {"pipeline_id": "p1", "pipeline_version_id": vid, "display_name": name,
                               "created_at": created, "pipeline_spec": {}}  # fmt: skip


def test_the_newest_retraining_version_is_the_last_uploaded_of_all_pages_and_never_a_caching_off_copy():
    # 150 uploads, oldest first; the very last one is a --caching off copy made for one run.
    state = FakeKfpState()
    _retraining_pipeline(state, [f"0.1.0-c{i:03d}" for i in range(149)] + ["0.1.0-c148-caching-off"])
    with serve_fake_kfp(state) as (url, state):
        api = alert.KfpApi(url)
        assert api.pipeline_version("planets-retraining", "") == ("p1", "v148", "0.1.0-c148")
        # Named on purpose, a variant is still found.
        assert api.pipeline_version("planets-retraining", "0.1.0-c148-caching-off")[1] == "v149"
        assert api.pipeline_version("planets-retraining", "0.1.0-c003")[1] == "v003"


def _summary_file(tmp_path, verdict=drift.DRIFT):
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(_summary(verdict)))
    return path


def _alert_component(tmp_path, **arguments):
    from kfp import dsl

    from planets_mlops.components.raise_alert import raise_alert
    from tests.support.helpers import make_artifact

    return raise_alert.python_func(
        summary=make_artifact(dsl.Artifact, _summary_file(tmp_path)),
        alert=make_artifact(dsl.Markdown, tmp_path / "alert.md"),
        decision=make_artifact(dsl.Artifact, tmp_path / "decision.json"),
        **arguments,
    ).outcome


def test_the_alert_run_carries_service_account_pipeline_root_and_namespace_with_the_pipelines_token(
    tmp_path, monkeypatch
):
    # Multi-user Kubeflow: the API wants a bearer token (the projected token of audience
    # pipelines.kubeflow.org, mounted by the PodDefault) and a namespace on experiments.
    token = tmp_path / "token"
    token.write_text("projected-sa-token\n")
    state = FakeKfpState(token="projected-sa-token", multi_user=True)
    _retraining_pipeline(state, ["0.1.0-abc"])
    with serve_fake_kfp(state) as (url, state):
        monkeypatch.setenv("KFP_HOST", url)
        monkeypatch.delenv("KFP_TOKEN", raising=False)
        monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(token))
        # What the downward API sets in the alert pod (pipelines/monitoring.py).
        monkeypatch.setenv("KFP_NAMESPACE", "team-planets")
        monkeypatch.setenv("KFP_RUN_SERVICE_ACCOUNT", "planets-pipeline-runner")
        answer = _alert_component(
            tmp_path, start_retraining=True, retraining_pipeline_root="gs://planets-artifacts/kfp/",
            retraining_arguments={"data_repo_url": str(tmp_path / "no-such-repo"),
                                  "label_studio_project": "p"},
        )  # fmt: skip
    (run,) = state.runs.values()
    assert run["service_account"] == "planets-pipeline-runner"
    assert run["runtime_config"]["pipeline_root"] == "gs://planets-artifacts/kfp"
    (experiment,) = state.experiments.values()
    assert experiment["namespace"] == "team-planets" and run["experiment_id"] == experiment["experiment_id"]
    assert all(r.headers["authorization"] == "Bearer projected-sa-token" for r in state.requests)
    assert all(r.query.get("namespace") == "team-planets" for r in state.calls("GET", "/(experiments|runs)"))
    assert "start_retraining: run run-" in answer
    record = json.loads((tmp_path / "decision.json").read_text())
    # The data repository is unreadable: the key names it instead of a DVC hash, and says why.
    assert (
        record["trigger"]["data"].endswith("no-such-repo@main:data/raw") and record["trigger"]["data_error"]
    )
    assert run["display_name"].startswith(f"retraining-{record['trigger']['key']}-")


def test_a_failed_action_fails_the_alert_step_after_writing_its_record(tmp_path, monkeypatch):
    state = FakeKfpState(token="the-right-one")
    _retraining_pipeline(state, ["0.1.0-abc"])
    with serve_fake_kfp(state) as (url, state):
        monkeypatch.setenv("KFP_HOST", url)
        monkeypatch.setenv("KFP_TOKEN", "a-wrong-one")
        with pytest.raises(PlanetsError, match="start_retraining: .*HTTP 401.*pipelines.kubeflow.org"):
            _alert_component(tmp_path, start_retraining=True, retraining_arguments={"data_repo_url": "x"})
    assert not state.runs
    (retrain,) = [a for a in json.loads((tmp_path / "decision.json").read_text())["actions"]
                  if a["action"] == "start_retraining"]  # fmt: skip
    assert retrain["failed"] and "HTTP 401" in retrain["outcome"]


def test_one_drift_episode_starts_one_retraining_per_key_and_cool_down():
    from datetime import timedelta

    from planets_mlops.monitoring import trigger

    now = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
    key = trigger.retraining_key(
        "md5-a.dir", "planets-classifier:v1", {"data_repo_url": "r", "train_lr": 0.001}
    )
    assert key.value == trigger.retraining_key("md5-a.dir", "planets-classifier:v1",
                                               {"train_lr": 0.001, "data_repo_url": "r"}).value  # fmt: skip
    others = [
        trigger.retraining_key(
            "md5-b.dir", "planets-classifier:v1", {"data_repo_url": "r", "train_lr": 0.001}
        ),
        trigger.retraining_key(
            "md5-a.dir", "planets-classifier:v2", {"data_repo_url": "r", "train_lr": 0.001}
        ),
        trigger.retraining_key(
            "md5-a.dir", "planets-classifier:v1", {"data_repo_url": "r", "train_lr": 0.01}
        ),
    ]
    assert len({key.value} | {k.value for k in others}) == 4
    assert trigger.decide([], key, 24, now).start

    def run(state, hours_ago):
        return {"run_id": "r1", "state": state, "created_at": (now - timedelta(hours=hours_ago)).isoformat()}

    running = trigger.decide([run("RUNNING", 30)], key, 24, now)
    assert not running.start and "still RUNNING" in running.why and running.previous_run == "r1"
    recent = trigger.decide([run("FAILED", 5)], key, 24, now)
    assert not recent.start and "within the 24 h cool-down" in recent.why
    assert trigger.decide([run("SUCCEEDED", 25)], key, 24, now).start
    skipped = alert.raise_alert(
        _summary(), AlertParams(start_retraining=True),
        retrain=lambda: pytest.fail("a duplicate was started"), dedupe=lambda: recent, trigger=key.to_dict(),
    )  # fmt: skip
    (action,) = [a for a in skipped.actions if a.action == "start_retraining"]
    assert not action.taken and not action.failed and "cool-down" in action.why
    assert not skipped.failed and key.value in skipped.to_markdown()
    assert skipped.metadata()["retraining_key"] == key.value
    with pytest.raises(InvalidParameterError, match="retraining_cooldown_hours"):
        AlertParams(retraining_cooldown_hours=-1)


@pytest.mark.parametrize(
    "url",
    ["http://hooks.example/services/T0K3N-secret path", "http://hooks.example:99999/services/T0K3N-secret"],
    ids=["space-in-path", "bad-port"],
)
def test_every_action_is_isolated_and_secrets_never_shown(url, caplog):
    """Issue 26, defect 3: an InvalidURL from the webhook (a space or a bad port), or a
    KeyError from a KFP answer of another shape, escaped raise_alert: the alert and the
    other actions were lost, and the URL case printed the webhook's secret path."""

    def post() -> str:
        return alert.post_webhook(url, {"text": "drift"}, 2.0)

    def retrain() -> str:
        answer: dict = {"unexpected": "shape"}
        return f"run {answer['run_id']}"

    result = alert.raise_alert(
        _summary(), AlertParams(notify=True, start_retraining=True, push_to_label_studio=True),
        notify=post, push=lambda: "3 task(s)", retrain=retrain,
        secrets=[*alert.webhook_secrets(url), "kfp-token-xyz"],
    )  # fmt: skip
    actions = {a.action: a for a in result.actions}
    assert actions["notify"].failed and actions["notify"].outcome.startswith("PlanetsError")
    assert actions["start_retraining"].failed and "KeyError" in actions["start_retraining"].outcome
    assert (
        actions["push_to_label_studio"].outcome == "3 task(s)" and not actions["push_to_label_studio"].failed
    )
    shown = result.to_markdown() + result.to_json() + caplog.text
    assert "T0K3N" not in shown and "services" not in shown


def test_secrets_are_scrubbed_from_an_action_s_message():
    url = "https://hooks.example/services/T0K3N?key=abc123"

    def leaky() -> str:
        raise RuntimeError(f"cannot post to {url} with token kfp-token-xyz")

    result = alert.raise_alert(
        _summary(),
        AlertParams(notify=True),
        notify=leaky,
        secrets=[*alert.webhook_secrets(url), "kfp-token-xyz"],
    )
    outcome = result.actions[0].outcome
    assert outcome == "RuntimeError: cannot post to <hidden> with token <hidden>"
    assert alert.secrets_from_env({alert.WEBHOOK_ENV: url, "KFP_TOKEN": "t0k"})[-1] == "t0k"


def test_the_webhook_timeout_bounds_the_whole_call():
    """Issue 26, weak point: the timeout was per read, so a webhook that drip-feeds its
    answer held the step 19-20 s against a 2 s limit. A real drip-feeding server on 127.0.0.1."""
    import time

    from tests.support.hostile_http import hostile_server

    with hostile_server() as slow:
        started = time.monotonic()
        with pytest.raises(PlanetsError, match=r"did not answer within 1 s"):
            alert.post_webhook(f"{slow.url}/drip", {"text": "drift"}, 1.0)
        assert time.monotonic() - started < 5


def test_alert_on_summary_reads_its_environment_and_starts_one_run_per_key(tmp_path):
    # What the raise_alert component calls, with the environment and the clock passed in.
    state = FakeKfpState(token="the-token")
    _retraining_pipeline(state, ["0.1.0-abc"])
    now = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
    retraining = alert.RetrainingRun(arguments={"data_repo_url": str(tmp_path / "no-such-repo")})
    params = AlertParams(start_retraining=True, push_to_label_studio=True)
    with serve_fake_kfp(state) as (url, state):
        env = {"KFP_HOST": url, "KFP_TOKEN": "the-token", "KFP_RUN_SERVICE_ACCOUNT": "runner"}
        first = alert.alert_on_summary(_summary_file(tmp_path), params, retraining, env=env, now=now)
        again = alert.alert_on_summary(_summary_file(tmp_path), params, retraining, env=env, now=now)
    (run,) = state.runs.values()
    assert run["service_account"] == "runner" and run["display_name"].startswith("retraining-")
    assert again.trigger["key"] == first.trigger["key"]
    (repeat,) = [a for a in again.actions if a.action == "start_retraining"]
    assert not repeat.taken and not repeat.failed  # the same key: a duplicate, skipped
    # No project or inbox was given: the push asked for is a failed action, so the step fails.
    (push,) = [a for a in first.actions if a.action == "push_to_label_studio"]
    assert push.failed and "label_studio_project or inbox_uri is empty" in push.why
    with pytest.raises(PlanetsError, match="these actions failed: push_to_label_studio"):
        first.outcome()


def test_the_outcome_of_an_alert_without_failures_is_its_decision(tmp_path):
    result = alert.alert_on_summary(_summary_file(tmp_path, drift.NO_DRIFT), AlertParams(notify=True),
                                    alert.RetrainingRun(), env={})  # fmt: skip
    assert result.outcome() == result.decision() and result.decision().startswith("no drift for m:1")


def test_the_retraining_key_names_an_unreadable_data_repository(tmp_path):
    from planets_mlops.monitoring import trigger

    key = trigger.retraining_key_for({"data_repo_url": str(tmp_path / "gone"), "data_rev": "v2"}, "m:1")
    assert key.data == f"{tmp_path / 'gone'}@v2:data/raw" and "not found" in key.data_error
    assert key.production == "m:1"
