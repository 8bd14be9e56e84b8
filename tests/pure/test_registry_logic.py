"""Pure parts of the registry: parameter types after KFP, the verdict's headline, the
confusion matrix from KFP metadata, the reproduce command, and the registry knobs."""

from __future__ import annotations

import pytest

from planets_mlops.errors import InvalidParameterError
from planets_mlops.knobs import RegistryParams
from planets_mlops.registry.release import reproduce_command
from planets_mlops.registry.steps import (
    Promotion,
    confusion_from_metadata,
    normalize_params,
    promote_model,
    verdict_headline,
)


def test_params_get_their_knob_types_back():
    # What KFP hands a component for a dict of pipeline parameters.
    raw = {"train_epochs": "10.0", "train_lr": "0.001", "prepare_grayscale": "False", "other": "x"}
    assert normalize_params(raw) == {
        "train_epochs": 10,
        "train_lr": 0.001,
        "prepare_grayscale": False,
        "other": "x",
    }
    assert normalize_params({"prepare_grayscale": True, "train_seed": 5241.0}) == {
        "prepare_grayscale": True,
        "train_seed": 5241,
    }


def test_verdict_headline_and_confusion(tmp_path):
    verdict = tmp_path / "verdict"
    verdict.write_text("\n# Promotion gate: **PROMOTE**\n\nmore\n")
    assert verdict_headline(verdict) == "Promotion gate: **PROMOTE**"
    assert verdict_headline(tmp_path / "missing") == "gate: promote"
    metadata = {
        "confusionMatrix": {
            "annotationSpecs": [{"displayName": "Earth"}, {"displayName": "Moon"}],
            "rows": [{"row": [3, 1]}, {"row": [0, 4]}],
        }
    }
    assert confusion_from_metadata(metadata) == (["Earth", "Moon"], [[3, 1], [0, 4]])
    assert confusion_from_metadata({}) == ([], [])


def test_reproduce_needs_a_data_commit():
    unpublished = reproduce_command({"data_content_hash": "abc123"}, {"train_lr": 0.1})
    assert unpublished.startswith("not reproducible from git") and "abc123" in unpublished
    command = reproduce_command(
        {"data_commit": "c0ffee", "data_repo_url": "https://x/y.git", "pipeline": "training"},
        {"train_epochs": 3, "gate_alpha": 0.05},
    )
    assert (
        command
        == "planets-mlops run training --param data_repo_url=https://x/y.git --param data_rev=c0ffee "
        + ("--param train_epochs=3")
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("model_name", ""),
        ("model_name", "bad name"),
        ("experiment", " "),
        ("timeout_s", 0),
        ("lock_wait_s", float("nan")),
    ],
)
def test_registry_knobs_refuse_bad_values(field, value):
    with pytest.raises(InvalidParameterError):
        RegistryParams(**{field: value})


def test_release_markdown_rounds_figures_and_wraps_the_reproduce_command():
    import shlex

    from planets_mlops.registry.release import to_markdown, wrap_command

    command = reproduce_command(
        {"data_commit": "c0ffee", "data_repo_url": "https://example.com/data.git", "data_path": "data/raw"},
        {"train_lr": 0.001, "train_epochs": 3},
    )
    wrapped = wrap_command(command)
    assert shlex.split(wrapped.replace("\\\n", " ")) == shlex.split(command)
    assert wrapped.splitlines()[1].strip() == "--param data_repo_url=https://example.com/data.git \\"
    record = {
        "release": 3, "model": "planets-classifier", "alias": "production", "version": "4",
        "from_version": "3", "when": "2026-12-07", "by": "ci", "kfp_run_id": "", "why": "gate",
        "gate": {"p_value": 0.0078125123456789, "delta": 0.2000000000000001},
        "data": {"commit": "c0ffee", "dvc_hash": "abc.dir"}, "code": {}, "bento": {}, "labels": {},
        "images": {}, "mlflow_run_id": "run-1", "deployed": None, "reproduce": command,
    }  # fmt: skip
    text = to_markdown(record)
    assert "| p_value | 0.007813 |" in text and "| delta | 0.2 |" in text
    assert "  - commit: `c0ffee`" in text and "{" not in text
    assert f"```bash\n{wrapped}\n```" in text


def test_promote_model_with_tracking_off_lets_the_verdict_stand(tmp_path):
    verdict = tmp_path / "verdict"
    verdict.write_text("# Promotion gate: **PROMOTE**\n")
    outcome = promote_model(
        RegistryParams(tracking=False),
        registered={"note": "tracking is off"},
        verdict={"production_version": "", "promote": True},
        verdict_path=verdict,
        bento={"bento_tag": "planets_classifier:v1"},
        bento_uri="gs://b/v1.bento",
        kfp_run_id="run-1",
    )
    assert outcome.moved and outcome.version == ""
    assert outcome.production() == "untracked"
    assert "Nothing registered (tracking is off)" in outcome.markdown


@pytest.mark.parametrize(
    "moved, version, production", [(True, "4", "4"), (True, "", "untracked"), (False, "4", "")]
)
def test_the_promotion_names_the_version_production_now_names(moved, version, production):
    # Empty when refused: the deploy step then does not run.
    assert Promotion(moved, version, {}, "").production() == production
