"""Every default has one source, planets_mlops.knobs: the compiled IR must agree with it."""

from __future__ import annotations

import copy

import pytest

from planets_mlops.knobs import (
    PIPELINE_KNOBS,
    AlertParams,
    DataParams,
    DeployParams,
    DriftParams,
    EvaluateParams,
    LabelParams,
    PrepareParams,
    RegistryParams,
    TrainParams,
    defaults,
)
from planets_mlops.pipelines.compile import compile_all
from tests.support.helpers import load_ir

# A pipeline input with a default must be in knobs.PIPELINE_KNOBS.
# Inputs whose default is no knob: empty means "not set" (a URI, a config, a secret name).
NOT_KNOBS = {
    "dvc_remote_config", "production_model_uri", "inbox_uri", "label_studio_project", "window_end",
    "retraining_version", "retraining_arguments", "retraining_experiment", "evidently_workspace",
    "service_url", "retraining_service_account", "retraining_pipeline_root", "model_uri", "model_version",
}  # fmt: skip
# Component -> the dataclasses whose fields its inputs of the same name take.
COMPONENT_KNOBS = {
    "comp-pull-data": [DataParams],
    "comp-prepare-dataset": [PrepareParams],
    "comp-train-model": [TrainParams],
    "comp-evaluate-model": [EvaluateParams, RegistryParams],
    "comp-register-model": [RegistryParams],
    "comp-promote-model": [RegistryParams],
    "comp-deploy-model": [DeployParams],
    "comp-import-labels": [LabelParams],
    "comp-check-new-labels": [LabelParams],
    "comp-create-inbox-tasks": [LabelParams],
    "comp-detect-drift": [DriftParams],
    "comp-raise-alert": [AlertParams, LabelParams],
    "comp-resolve-production": [RegistryParams],
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
