"""Pipelines of the suite.

``BUILDERS`` maps each pipeline name to a factory taking compile-time options
(:class:`pipelines.platform.GpuOptions`); ``PIPELINES`` holds each built with defaults, built
on first use (building sizes each task through KFP's ``inspect.stack()``, which costs seconds
when it runs inside an import: importing the package no longer builds anything).
"""

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from planets_mlops.pipelines.monitoring import build_monitoring
from planets_mlops.pipelines.retraining import build_retraining
from planets_mlops.pipelines.training import build_training

BUILDERS: dict[str, Callable] = {
    "training": build_training,
    "retraining": build_retraining,
    "monitoring": build_monitoring,
}


class _Built(Mapping[str, Any]):
    """Each pipeline of ``BUILDERS`` built with its defaults when first looked up."""

    def __init__(self, builders: Mapping[str, Callable]) -> None:
        self._builders = builders
        self._built: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self._built:
            self._built[name] = self._builders[name]()
        return self._built[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._builders)

    def __len__(self) -> int:
        return len(self._builders)


PIPELINES: Mapping[str, Callable] = _Built(BUILDERS)
