"""Every default has one source, planets_mlops.knobs: the compiled IR must agree with it."""

from __future__ import annotations

import copy

import pytest
from planets_mlops.pipelines.compile import compile_all

from planets_mlops.knobs import (
    DataParams,
    DeployParams,
    EvaluateParams,
    LabelParams,
    PrepareParams,
    TrainParams,
    defaults,
)
from tests.helpers import load_ir

pytestmark = pytest.mark.component

# Pipeline parameter -> (dataclass, field). A pipeline knob with a default must be listed.
PIPELINE_KNOBS = {
    "data_rev": (DataParams, "rev"),
    "data_path": (DataParams, "path"),
    "dvc_remote": (DataParams, "remote"),
    **{f"prepare_{name}": (PrepareParams, name) for name in defaults(PrepareParams)},
    **{f"train_{name}": (TrainParams, name) for name in defaults(TrainParams)},
    "min_improvement": (EvaluateParams, "min_improvement"),
    "gate_alpha": (EvaluateParams, "gate_alpha"),
    "deploy": (DeployParams, "deploy"),
    "serving_name": (DeployParams, "name"),
    "serving_namespace": (DeployParams, "namespace"),
    "min_new_labels": (LabelParams, "min_new_labels"),
    "publish_labels": (LabelParams, "publish"),
    "publish_branch": (LabelParams, "publish_branch"),
    "push_new_predictions": (LabelParams, "push_new_predictions"),
    "allow_new_classes": (LabelParams, "allow_new_classes"),
    "inbox_max_tasks": (LabelParams, "inbox_max_tasks"),
}
# Inputs whose default is no knob: empty means "not set" (a URI, a config, a secret name).
NOT_KNOBS = {"dvc_remote_config", "production_model_uri", "inbox_uri"}
# Component -> the dataclasses whose fields its inputs of the same name take.
COMPONENT_KNOBS = {
    "comp-pull-data": [DataParams],
    "comp-prepare-dataset": [PrepareParams],
    "comp-train-model": [TrainParams],
    "comp-evaluate-model": [EvaluateParams],
    "comp-deploy-model": [DeployParams],
    "comp-import-labels": [LabelParams],
    "comp-check-new-labels": [LabelParams],
    "comp-create-inbox-tasks": [LabelParams],
}


@pytest.fixture(scope="module")
def specs(tmp_path_factory):
    out = tmp_path_factory.mktemp("ir")
    return {p.stem: load_ir(p)[0] for p in compile_all(out)}


def test_pipeline_defaults_come_from_the_knobs(specs):
    checked = 0
    for pipeline, spec in specs.items():
        for name, param in spec["root"]["inputDefinitions"]["parameters"].items():
            if "defaultValue" not in param or name in NOT_KNOBS:
                continue
            assert name in PIPELINE_KNOBS, (
                f"{pipeline}.{name} has a default but no source in planets_mlops.knobs"
            )
            cls, field = PIPELINE_KNOBS[name]
            assert param["defaultValue"] == defaults(cls)[field], (
                f"{pipeline}.{name} != {cls.__name__}.{field}"
            )
            checked += 1
    assert checked >= 30


def test_component_defaults_match_the_knobs(specs):
    checked = 0
    for spec in specs.values():
        for comp, knobs in COMPONENT_KNOBS.items():
            params = spec["components"].get(comp, {}).get("inputDefinitions", {}).get("parameters", {})
            for name, param in params.items():
                for cls in knobs:
                    if name in defaults(cls):
                        assert param.get("defaultValue") == defaults(cls)[name], (
                            f"{comp}.{name} = {param.get('defaultValue')!r} but {cls.__name__}.{name} = "
                            f"{defaults(cls)[name]!r}: change the component's literal default"
                        )
                        checked += 1
    assert checked >= 20


def test_a_diverging_default_is_caught(specs):
    spec = copy.deepcopy(specs["training"])
    spec["components"]["comp-train-model"]["inputDefinitions"]["parameters"]["lr"]["defaultValue"] = 0.5
    with pytest.raises(AssertionError, match="comp-train-model.lr"):
        test_component_defaults_match_the_knobs({"training": spec})
