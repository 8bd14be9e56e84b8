"""register_model, promote_model and evaluate_model through ``python_func``: tracking off,
and a tracking server that does not answer (fail fast naming the URI, or go on only with
``allow_untracked``). Real artifacts on ``tmp_path``; the dead server is a free port."""

from __future__ import annotations

import time

import pytest
from kfp import dsl

from planets_mlops.app.dev.net import free_port
from planets_mlops.components.evaluate_model import evaluate_model
from planets_mlops.components.promote_model import promote_model
from planets_mlops.components.register_model import register_model
from planets_mlops.errors import TrackingError
from tests.support.helpers import make_artifact


def register_inputs(tmp_path):
    files = {}
    for name, kind in (
        ("source", dsl.Dataset),
        ("prepared", dsl.Dataset),
        ("model", dsl.Model),
        ("metrics", dsl.Metrics),
        ("confusion", dsl.ClassificationMetrics),
        ("report", dsl.HTML),
        ("verdict", dsl.Markdown),
        ("registered", dsl.Artifact),
    ):
        path = tmp_path / name
        path.write_text("")
        files[name] = make_artifact(kind, path)
    return files


@pytest.fixture
def dead_server(monkeypatch):
    uri = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def test_tracking_off_registers_and_moves_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    inputs = register_inputs(tmp_path)
    assert register_model.python_func(**inputs).version_registered is False
    assert inputs["registered"].metadata["note"] == "tracking is off"
    release = make_artifact(dsl.Markdown, tmp_path / "release")
    bento = make_artifact(dsl.Model, tmp_path / "bento", {"bento_tag": "planets_classifier:x"})
    moved = promote_model.python_func(
        registered=inputs["registered"], verdict=inputs["verdict"], bento=bento, release=release
    ).production_version
    assert moved == "untracked"
    assert "Nothing registered" in (tmp_path / "release").read_text()


def test_register_fails_fast_on_a_dead_server(tmp_path, dead_server):
    started = time.monotonic()
    with pytest.raises(TrackingError) as caught:
        register_model.python_func(**register_inputs(tmp_path), tracking=True)
    assert dead_server in str(caught.value) and "allow_untracked" in str(caught.value)
    assert time.monotonic() - started < 30


def test_register_and_promote_go_on_only_when_allowed(tmp_path, dead_server):
    inputs = register_inputs(tmp_path)
    assert (
        register_model.python_func(**inputs, tracking=True, allow_untracked=True).version_registered is False
    )
    assert "unreachable" in inputs["registered"].metadata["note"]
    release = make_artifact(dsl.Markdown, tmp_path / "release")
    bento = make_artifact(dsl.Model, tmp_path / "bento", {"bento_tag": "planets_classifier:x"})
    moved = promote_model.python_func(
        registered=inputs["registered"],
        verdict=inputs["verdict"],
        bento=bento,
        release=release,
        tracking=True,
        allow_untracked=True,
    ).production_version
    assert moved == "untracked"


def test_evaluate_without_a_uri_needs_the_registry(tmp_path, dead_server, small_prepared, tiny_model):
    outputs = {
        "metrics": make_artifact(dsl.Metrics, tmp_path / "metrics"),
        "confusion": make_artifact(dsl.ClassificationMetrics, tmp_path / "confusion"),
        "report": make_artifact(dsl.HTML, tmp_path / "report.html"),
        "verdict": make_artifact(dsl.Markdown, tmp_path / "verdict.md"),
    }
    prepared = make_artifact(dsl.Dataset, small_prepared)
    model = make_artifact(dsl.Model, tiny_model)
    with pytest.raises(TrackingError, match="unreachable"):
        evaluate_model.python_func(prepared=prepared, model=model, **outputs, tracking=True)
    assert not (tmp_path / "report.html").exists()  # failed before evaluating anything
    # With tracking on, even an explicit URI asks the registry which version production
    # names (the promotion's compare-and-set expects it): it fails the same way.
    with pytest.raises(TrackingError):
        evaluate_model.python_func(
            prepared=prepared, model=model, **outputs, tracking=True, production_model_uri=str(tiny_model)
        )
