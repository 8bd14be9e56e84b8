"""Named outputs under kfp.local: named, described, passed on, and gated on.

A component's named output parameter (``promote: dsl.OutputPath(bool)``, or a NamedTuple
field: both compile to the same IR) is named and described in the IR and reaches a
downstream task. Under kfp 2.17's own ``kfp.local`` a ``dsl.If`` on it never runs its body:
the local condition evaluator reads a channel ``pipelinechannel--<task>-<output>`` as a task
output only when it contains ``-Output`` (or ``--``); ``decide-promote`` is looked up as a
pipeline input, logs "Could not resolve parent input", the condition counts as False and the
run still reports success. ``init_local`` patches that evaluator
(:func:`planets_mlops.app.local.named_output_conditions`, kfp 2.17.x), so the suite's gates
on named outputs (``promoted``, ``drift``, ``production-moved``) run locally; these tests
assert that a gated task really ran, or really did not.
"""

from typing import NamedTuple

import pytest
from kfp import compiler, dsl
from kfp.local import SubprocessRunner

from planets_mlops.app.local import run_local
from planets_mlops.components.images import RUNTIME_IMAGE


@dsl.component(base_image=RUNTIME_IMAGE, install_kfp_package=False)
def decide(score: float, promote: dsl.OutputPath(bool), version: dsl.OutputPath(str)):  # type: ignore[valid-type]
    """Decide whether to promote.

    Args:
        score: The candidate's score; above 0.5 promotes it.

    Returns:
        promote: Whether to promote the candidate.
        version: The candidate's version.
    """
    import json

    with open(promote, "w") as f:
        f.write(json.dumps(score > 0.5))
    with open(version, "w") as f:
        f.write("v7")


@dsl.component(base_image=RUNTIME_IMAGE, install_kfp_package=False)
def decide_single(score: float) -> bool:
    """Decide whether to promote.

    Args:
        score: The candidate's score; above 0.5 promotes it.

    Returns:
        Output: Whether to promote the candidate.
    """
    return score > 0.5


@dsl.component(base_image=RUNTIME_IMAGE, install_kfp_package=False)
def record(flag: bool, name: str, marker: str):
    """Write what it was given to ``marker``, so a test sees that it ran and with what."""
    with open(marker, "w") as f:
        f.write(f"{flag!r} {name}")


@dsl.pipeline
def named_passed(score: float, marker: str):
    """A named output as a downstream task's input, no condition."""
    task = decide(score=score)
    record(flag=task.outputs["promote"], name=task.outputs["version"], marker=marker)


@dsl.pipeline
def named_gated(score: float, marker: str):
    """``dsl.If`` on a named output."""
    task = decide(score=score)
    with dsl.If(task.outputs["promote"] == True, name="promoted"):  # noqa: E712 - a KFP condition
        record(flag=task.outputs["promote"], name=task.outputs["version"], marker=marker)


@dsl.pipeline
def single_gated(score: float, marker: str):
    """``dsl.If`` on a single unnamed output (kfp's own ``Output``, which the patch leaves to kfp)."""
    task = decide_single(score=score)
    with dsl.If(task.output == True, name="promoted"):  # noqa: E712 - a KFP condition
        record(flag=task.output, name="single", marker=marker)


def _run(pipeline, tmp_path, score):
    marker = tmp_path / "ran"
    run = run_local(
        pipeline, tmp_path / "runs", runner=SubprocessRunner(use_venv=False), score=score, marker=str(marker)
    )
    return run, (marker.read_text() if marker.exists() else None)


def test_named_outputs_are_named_and_described_in_the_ir(tmp_path):
    compiler.Compiler().compile(decide, str(tmp_path / "decide.yaml"))
    import yaml

    outputs = yaml.safe_load((tmp_path / "decide.yaml").read_text())["components"]["comp-decide"][
        "outputDefinitions"
    ]
    assert outputs["parameters"] == {
        "promote": {"description": "Whether to promote the candidate.", "parameterType": "BOOLEAN"},
        "version": {"description": "The candidate's version.", "parameterType": "STRING"},
    }


@pytest.mark.parametrize("score", [0.9, 0.1])
def test_named_output_reaches_a_downstream_task_as_an_input(tmp_path, score):
    run, recorded = _run(named_passed, tmp_path, score)
    assert recorded == f"{score > 0.5!r} v7"
    # kfp.local leaves dsl.OutputPath values as files named after the outputs, not in
    # executor_output.json's parameterValues (where a NamedTuple's are); the run's reader
    # reads both, typed by the component's output definitions.
    task = run.tasks["decide"]
    assert task.parameters == {"promote": score > 0.5, "version": "v7"}
    assert "promote" not in task.artifacts


@pytest.mark.parametrize("score", [0.9, 0.1])
def test_if_on_the_single_output_runs_the_gated_task_only_when_true(tmp_path, score):
    _, recorded = _run(single_gated, tmp_path, score)
    assert recorded == ("True single" if score > 0.5 else None)


def test_if_on_a_named_output_skips_the_gated_task_when_false(tmp_path):
    _, recorded = _run(named_gated, tmp_path, 0.1)
    assert recorded is None


def test_if_on_a_named_output_runs_the_gated_task_when_true(tmp_path):
    _, recorded = _run(named_gated, tmp_path, 0.9)
    assert recorded == "True v7"


@dsl.component(base_image=RUNTIME_IMAGE, install_kfp_package=False)
def decide_tuple(score: float) -> NamedTuple("Outputs", [("promote", bool), ("version", str)]):  # type: ignore[valid-type]
    """Decide whether to promote, as the suite's components return their named outputs.

    Args:
        score: The candidate's score; above 0.5 promotes it.

    Returns:
        promote: Whether to promote the candidate.
        version: The candidate's version.
    """

    class Outputs(NamedTuple):
        promote: bool
        version: str

    return Outputs(score > 0.5, "1")


@dsl.pipeline
def tuple_gated(score: float, marker: str):
    """``dsl.If`` on a NamedTuple field, inside an outer condition (a nested DAG)."""
    task = decide_tuple(score=score)
    with dsl.If(score > 0.0, name="outer"), dsl.If(task.outputs["promote"] == True, name="promoted"):  # noqa: E712
        record(flag=task.outputs["promote"], name=task.outputs["version"], marker=marker)


@pytest.mark.parametrize("score", [0.9, 0.1])
def test_if_on_a_named_tuple_field_runs_the_gated_task_only_when_true(tmp_path, score):
    run, recorded = _run(tuple_gated, tmp_path, score)
    assert recorded == ("True 1" if score > 0.5 else None)
    assert run.tasks["decide-tuple"].parameters == {"promote": score > 0.5, "version": "1"}


def test_the_patch_refuses_another_kfp_version(monkeypatch):
    import kfp
    from kfp.local.orchestrator import enhanced_dag_orchestrator

    from planets_mlops.app import local

    local.named_output_conditions()
    evaluator = enhanced_dag_orchestrator.ConditionEvaluator
    monkeypatch.setattr(evaluator, "_resolve_pipeline_channel", staticmethod(local._KFP_RESOLVE[0]))
    monkeypatch.setattr(kfp, "__version__", "2.18.0")
    with pytest.warns(RuntimeWarning, match="kfp 2.18.0: .* not patched"):
        assert local.named_output_conditions() is False
    assert evaluator._resolve_pipeline_channel is local._KFP_RESOLVE[0]
    monkeypatch.setattr(kfp, "__version__", "2.17.0")
    assert local.named_output_conditions() is True
    assert evaluator._resolve_pipeline_channel is local._resolve_channel


def test_kfp_rejects_a_literal_annotation():
    # Why a value that is one of a few choices is a `str` input whose knob checks the choices:
    # when this fails, `Literal[...]` choices could reach the IR.
    from typing import Literal

    with pytest.raises(TypeError, match="Artifacts must have both a schema_title and a schema_version"):

        @dsl.component(base_image=RUNTIME_IMAGE, install_kfp_package=False)
        def pick(augment: Literal["none", "photometric"] = "none") -> str:
            return augment
