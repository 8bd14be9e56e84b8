"""Pure parts of the registry: parameter types after KFP, the verdict's headline, the
confusion matrix from KFP metadata, the reproduce command, and the registry knobs."""

from __future__ import annotations

import pytest

from planets_mlops.errors import InvalidParameterError
from planets_mlops.knobs import RegistryParams
from planets_mlops.registry.release import reproduce_command
from planets_mlops.registry.steps import confusion_from_metadata, normalize_params, verdict_headline

pytestmark = pytest.mark.pure


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
