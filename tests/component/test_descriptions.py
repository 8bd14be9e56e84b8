"""Every pipeline and component input and output is described in the compiled IR, and the
parameter reference page (docs/parameters.md) is the one the IR generates today."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest

from planets_mlops import knobs
from planets_mlops.app import parameter_docs
from planets_mlops.errors import InvalidParameterError

ROOT = Path(__file__).resolve().parents[2]
PARAMS_CLASSES = [
    cls for cls in vars(knobs).values() if isinstance(cls, type) and dataclasses.is_dataclass(cls)
]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    return parameter_docs.compile_specs(tmp_path_factory.mktemp("ir"))


def _entries(definitions):
    return {**definitions.get("parameters", {}), **definitions.get("artifacts", {})}


def test_every_input_and_output_is_described(compiled):
    pipelines, components = compiled
    missing, counts = parameter_docs.undescribed(pipelines, components)
    assert not missing, (
        f"{len(missing)} without a description (a knob: planets_mlops.knobs; otherwise the "
        f"docstring's Args:/Returns:): {missing}"
    )
    # Today: training 32 root inputs, retraining 40, monitoring 27; 15 components.
    assert {p: len(_entries(s["root"]["inputDefinitions"])) >= 20 for p, s in pipelines.items()} == {
        "training": True,
        "retraining": True,
        "monitoring": True,
    }
    assert len(components) >= 15
    assert counts["component files' outputs"][1] >= 30 and counts["component files' inputs"][1] >= 119


def test_a_missing_description_is_caught(compiled):
    pipelines, components = copy.deepcopy(compiled)
    del pipelines["training"]["root"]["inputDefinitions"]["parameters"]["train_lr"]["description"]
    spec = components["train_model"]["components"]["comp-train-model"]
    spec["outputDefinitions"]["artifacts"]["model"]["description"] = " "
    missing, _ = parameter_docs.undescribed(pipelines, components)
    assert missing == [
        ("pipeline training input", "train_lr"),
        ("train_model: comp-train-model outputs", "model"),
    ]


def test_parameter_page_is_up_to_date(compiled):
    page = ROOT / parameter_docs.PAGE
    assert page.read_text() == parameter_docs.render(*compiled), (
        f"{parameter_docs.PAGE} is out of date: run `{parameter_docs.REGENERATE}` and commit it"
    )


def test_parameter_page_lists_every_knob_input_with_its_description(compiled):
    text = (ROOT / parameter_docs.PAGE).read_text()
    assert "| `train_lr` | float | `0.001` | Learning rate of the Adam optimiser. |" in text
    assert "| `data_repo_url` | str | **required** |" in text
    assert "One of: none, photometric." in text  # choices are listed
    assert "### `train_model`" in text and "| `model` | Model artifact |" in text


def test_every_knob_has_a_description():
    assert len(PARAMS_CLASSES) >= 12
    for cls in PARAMS_CLASSES:
        for field in dataclasses.fields(cls):
            assert knobs.describe(cls, field.name).strip(), f"{cls.__name__}.{field.name} has no description"


def test_describe_knobs_adds_the_knob_lines_after_the_written_ones():
    @knobs.describe_knobs(knobs.TrainParams)
    def step(prepared: str, lr: float = 0.001, epochs: int = 10) -> bool:
        """Train.

        Args:
            prepared: The data.
            epochs: Said here, kept.

        Returns:
            Output: Done.
        """
        return True

    assert step.__doc__ == (
        "Train.\n\nArgs:\n    prepared: The data.\n    epochs: Said here, kept.\n"
        "    lr: Learning rate of the Adam optimiser.\n\nReturns:\n    Output: Done."
    )

    @knobs.describe_knobs(knobs.PIPELINE_KNOBS)
    def bare(train_lr: float = 0.001):
        """Bare."""

    assert bare.__doc__ == "Bare.\n\nArgs:\n    train_lr: Learning rate of the Adam optimiser."


def test_training_takes_the_guards_coverage_knob_as_it_is_declared():
    assert knobs.TrainParams.guard_coverage == knobs.GuardParams.coverage
    assert knobs.describe(knobs.TrainParams, "guard_coverage") == knobs.describe(
        knobs.GuardParams, "coverage"
    )


def test_describe_knobs_refuses_a_literal_that_differs_from_its_knob():
    def step(lr: float = 0.5):
        """Train."""

    with pytest.raises(ValueError, match=r"step\(lr=0.5\).*TrainParams.lr is 0.001"):
        knobs.describe_knobs(knobs.TrainParams)(step)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (
            lambda: knobs.TrainParams(augment="zoom"),
            r"Invalid augment='zoom': must be one of \['none', 'photometric'\]",
        ),
        (lambda: knobs.TrainParams(epochs=True), "Invalid epochs=True: must be a positive integer"),
        (lambda: knobs.DriftParams(min_records=100, max_records=50), "at most max_records"),
        (lambda: knobs.RegistryParams(model_name="-x"), "Invalid registered_model_name='-x'"),
        (lambda: knobs.MonitoringParams(batch_records=10**6), "an integer from 1 to 10000"),
        (lambda: knobs.InboxParams(min_margin=1.5), r"a number in \[0, 1\]"),
        (lambda: knobs.GuardParams(coverage=1.5), r"Invalid coverage=1.5: must be a fraction in \(0, 1\]"),
        (
            lambda: knobs.TrainParams(guard_coverage=0),
            r"Invalid guard_coverage=0: must be a fraction in \(0, 1\]",
        ),
        (lambda: knobs.GuardParams(k=0), "Invalid k=0: must be a positive integer"),
        (lambda: knobs.EvaluateParams(gate_alpha=1.0), "Invalid gate_alpha=1.0"),
    ],
)
def test_each_knob_check_runs_from_its_declaration(make, match):
    with pytest.raises(InvalidParameterError, match=match):
        make()
