"""Pipeline arguments: read from the flags, then checked all at once before any request.

Names and types are checked against the compiled pipeline's inputs; values against the
rules the steps themselves apply (the ``planets_mlops.knobs`` dataclasses, the deploy
manifests), so a value the cluster would refuse minutes later fails here, with every
problem listed in one message.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
from collections.abc import Mapping
from typing import Any

from planets_mlops.app import params as pp
from planets_mlops.deploy.manifests import DeploySpec, validate_spec
from planets_mlops.errors import InvalidParameterError, did_you_mean
from planets_mlops.knobs import (
    PIPELINE_KNOBS,
    preset_arguments,
)

logger = logging.getLogger(__name__)

# Every pipeline input is in knobs.PIPELINE_KNOBS or in NOT_KNOBS (a test compiles the
# pipelines and checks).
# Inputs no knob describes: required names, URIs, a config mapping.
NOT_KNOBS = frozenset(
    {
        "data_repo_url", "label_studio_project", "dvc_remote_config", "production_model_uri", "inbox_uri",
        "records_uri", "model_uri", "model_version", "window_end", "retraining_version",
        "retraining_arguments", "retraining_experiment", "evidently_workspace", "service_url",
        "retraining_service_account", "retraining_pipeline_root",
    }
)  # fmt: skip

# The deploy step checks the serving name and namespace inside a whole DeploySpec; the
# other fields of this probe are valid, so only the field under test can fail.
_DEPLOY_PROBE = DeploySpec(
    name="planets-classifier",
    namespace="planets-serving",
    image="registry.example/serving:0.1.0",
    bento_uri="gs://bucket/planets.bento",
    bento_tag="planets:0.1.0",
)
_DEPLOY_FIELDS = {
    "serving_name": "name",
    "serving_namespace": "namespace",
    "serving_monitoring_uri": "monitoring_uri",
    "serving_monitoring_sample": "monitoring_sample",
    "serving_inbox_uri": "inbox_uri",
}


class ParameterErrors(InvalidParameterError):
    """Several invalid pipeline arguments, reported together (exit code 2 like one).

    Args:
        pipeline: The pipeline's name.
        errors: One error per bad argument, in the order given.
    """

    def __init__(self, pipeline: str, errors: list[InvalidParameterError]) -> None:
        lines = "\n".join(f"  - {e}" for e in errors)
        ValueError.__init__(self, f"{len(errors)} invalid arguments for pipeline {pipeline!r}:\n{lines}")
        self.name = "parameters"
        self.value = [e.name for e in errors]
        self.errors = errors


def from_flags(args: argparse.Namespace) -> dict[str, Any]:
    """Pipeline arguments from ``--preset``, then ``--params-file``, then ``--param`` (which wins)."""
    file_params = pp.load_params_file(args.params_file) if args.params_file else {}
    preset = preset_arguments(getattr(args, "preset", "suite"))
    return pp.merge_arguments({**preset, **file_params}, args.param or [])


def _renamed(exc: InvalidParameterError, name: str) -> InvalidParameterError:
    # A knob's check names its field ("lr"); the user typed the pipeline input ("train_lr").
    text = str(exc).replace(f"Invalid {exc.name}=", f"Invalid {name}=", 1)
    renamed = InvalidParameterError(name, exc.value, "")
    renamed.args = (text,)
    return renamed


def _check(name: str, value: Any) -> None:
    if name in _DEPLOY_FIELDS:
        validate_spec(dataclasses.replace(_DEPLOY_PROBE, **{_DEPLOY_FIELDS[name]: value}))
    elif name in PIPELINE_KNOBS:
        cls, field = PIPELINE_KNOBS[name]
        cls(**{field: value})


def value_error(name: str, value: Any) -> InvalidParameterError | None:
    """The error the steps would raise on ``name=value``, or None when they accept it."""
    if isinstance(value, float) and not math.isfinite(value):
        return InvalidParameterError(name, value, "a finite number", "NaN and infinity are never valid here.")
    try:
        _check(name, value)
    except InvalidParameterError as exc:
        return _renamed(exc, name)
    except ImportError as exc:
        # The image checks of PrepareParams need the data extra (NumPy, Pillow); the base
        # install, enough to compile and submit, leaves them to the prepare step.
        logger.debug("%s: value check skipped (%s)", name, exc)
    return None


def validate(values: Mapping[str, Any], spec: Mapping[str, Any], pipeline: str) -> dict[str, Any]:
    """``values`` checked against the compiled ``spec`` and the steps' own rules.

    Returns:
        The arguments, coerced to the input types (see ``params.validate_arguments``).

    Raises:
        InvalidParameterError: One problem; :class:`ParameterErrors` for several.
    """
    inputs = pp.pipeline_inputs(spec)
    errors: list[InvalidParameterError] = []
    out: dict[str, Any] = {}
    for name, value in values.items():
        try:
            # One at a time so every bad name or type is reported, not just the first.
            coerced = pp.validate_arguments(
                {name: value}, {name: {**inputs[name], "optional": True}}, pipeline
            )
        except KeyError:
            coerced = None
            errors.append(
                InvalidParameterError(
                    "parameter",
                    name,
                    f"an input of pipeline {pipeline!r}: one of {sorted(inputs)}",
                    "Fix the name in --param or --params-file." + did_you_mean(name, inputs),
                )
            )
        except InvalidParameterError as exc:
            coerced = None
            errors.append(exc)
        if coerced is None:
            continue
        out[name] = coerced[name]
        problem = value_error(name, out[name])
        if problem is not None:
            errors.append(problem)
    missing = [n for n, s in inputs.items() if not s["optional"] and n not in values]
    if missing:
        errors.append(
            InvalidParameterError(
                "parameters", missing, f"set for pipeline {pipeline!r}", "Pass them with --param NAME=VALUE."
            )
        )
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ParameterErrors(pipeline, errors)
    return out
