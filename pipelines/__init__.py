"""Pipelines of the suite.

``BUILDERS`` maps each pipeline name to a factory taking compile-time options
(:class:`pipelines.platform.GpuOptions`); ``PIPELINES`` holds each built with defaults.
"""

from collections.abc import Callable

from planets_mlops.pipelines.monitoring import build_monitoring
from planets_mlops.pipelines.retraining import build_retraining
from planets_mlops.pipelines.training import build_training

BUILDERS: dict[str, Callable] = {
    "training": build_training,
    "retraining": build_retraining,
    "monitoring": build_monitoring,
}
PIPELINES: dict[str, Callable] = {name: build() for name, build in BUILDERS.items()}
