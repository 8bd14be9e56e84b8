"""Errors raised on bad input, each naming the input, the bad value and the fix."""


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
