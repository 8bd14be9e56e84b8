"""Errors raised on bad input, each naming the input, the bad value and the fix."""

from __future__ import annotations

from collections.abc import Iterable


class PlanetsError(Exception):
    """Base class of every error this project raises on purpose."""


class InvalidParameterError(PlanetsError, ValueError):
    """A parameter is outside what the step accepts.

    The message reads ``Invalid <name>=<value>: must be <allowed>. <fix>``.

    Args:
        name: The parameter's name as the caller knows it (argument, knob or env variable).
        value: The bad value.
        allowed: What the parameter accepts, completing "must be ...".
        fix: A sentence saying how to fix it; omitted from the message when empty.
    """

    def __init__(self, name: str, value: object, allowed: str, fix: str = "") -> None:
        message = f"Invalid {name}={value!r}: must be {allowed}."
        if fix:
            message += f" {fix}"
        super().__init__(message)
        self.name = name
        self.value = value


class DataError(PlanetsError):
    """The data set is missing, empty, corrupt or does not match what was asked for."""


class NewClassError(DataError):
    """Labellers used a label that is not yet a class, and adding classes was not allowed."""


class DataSourceError(PlanetsError):
    """The data repository, revision or DVC remote cannot be reached or resolved."""


class TrainingDivergedError(PlanetsError):
    """Training produced a non-finite loss: the weights are unusable, nothing is written."""


class DeployError(PlanetsError):
    """A deployment did not become healthy, or its smoke test failed; it was rolled back."""


class NotFoundError(PlanetsError, LookupError):
    """A named pipeline, pipeline version, file or stored object does not exist."""


class StorageError(PlanetsError):
    """A gs:// bucket or object cannot be read or written."""


class KubeflowError(PlanetsError):
    """The Kubeflow Pipelines API rejected or failed a request."""


class KubeflowConnectionError(KubeflowError):
    """The Kubeflow Pipelines API cannot be reached, or refused the credentials."""


class LabelStudioError(PlanetsError):
    """Label Studio cannot be reached, refused the token, or lacks the project or a file."""


class AcceleratorError(PlanetsError):
    """The step was asked for GPUs that TensorFlow cannot see or use."""


class TrackingError(PlanetsError):
    """The MLflow tracking server cannot be reached, refused a request, or lacks a model."""


class PromotionConflictError(PlanetsError):
    """An alias moved, or another promotion holds the lock: this promotion did not happen."""


def did_you_mean(value: object, choices: Iterable[str]) -> str:
    """``" Did you mean 'x'?"`` for the choices closest to ``value``, or ``""`` when none is close.

    Args:
        value: What the user typed.
        choices: The valid names (any iterable of strings).

    Returns:
        A sentence to append to a message (leading space included), or an empty string.
    """
    import difflib

    close = difflib.get_close_matches(str(value), list(choices), n=3, cutoff=0.6)
    if not close:
        return ""
    return " Did you mean " + " or ".join(repr(c) for c in close) + "?"
