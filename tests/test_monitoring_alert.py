"""The drift alert and its actions (planets_mlops.monitoring.alert), without a pipeline.

The retraining action talks to tests/fake_kfp_api.py, a fake of the KFP REST API: no
Kubeflow backend runs here. Everything else is real (files, the window bounds, errors).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from planets_mlops.errors import DataError, InvalidParameterError, NotFoundError, PlanetsError
from planets_mlops.knobs import AlertParams, DriftParams
from planets_mlops.monitoring import alert, drift
from tests.fake_kfp_api import NOW, FakeKfpState, serve_fake_kfp

pytestmark = pytest.mark.pure


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
