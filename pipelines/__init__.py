"""Pipelines of the suite; ``PIPELINES`` maps each pipeline name to its function."""

from typing import Callable

from pipelines.training import training

PIPELINES: dict[str, Callable] = {
    "training": training,
}
