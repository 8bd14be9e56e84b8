"""Serving settings, read from the environment once per process.

Read at import time on purpose: ``@bentoml.service(...)`` needs the worker count and the
metrics/access-log switches when the class is decorated, and the supervisor and every
worker must agree on them. Each setting names its variable in the error it raises.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from planets_mlops.errors import InvalidParameterError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InvalidParameterError(name, raw, "true or false", f"Set env {name}=true or {name}=false.")


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise InvalidParameterError(name, raw, "a positive integer", f"Unset {name} for {default}.") from exc
    if value <= 0:
        raise InvalidParameterError(name, raw, "a positive integer", f"Unset {name} for {default}.")
    return value


@dataclass(frozen=True)
class ServingSettings:
    """Knobs of the service; defaults are the fastest measured on 2 cores (docs/serving.md).

    Attributes:
        workers: BentoML worker processes (``PLANETS_WORKERS``, default 2).
        ort_threads: ONNX Runtime intra- and inter-op threads per worker
            (``PLANETS_ORT_THREADS``, default 1: more oversubscribes 2 cores).
        metrics: BentoML's Prometheus metrics on /metrics (``PLANETS_METRICS``, default off).
        access_log: BentoML's per-request access log (``PLANETS_ACCESS_LOG``, default off).
        max_upload_bytes: largest request body accepted (``PLANETS_MAX_UPLOAD_BYTES``,
            default 10 MiB); larger bodies get HTTP 413.
        max_batch: most images in one ``/predict_batch`` call (``PLANETS_MAX_BATCH``, 64).
    """

    workers: int = 2
    ort_threads: int = 1
    metrics: bool = False
    access_log: bool = False
    max_upload_bytes: int = 10 * 1024 * 1024
    max_batch: int = 64

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServingSettings:
        """Read every setting from ``env``; an unset variable keeps its default.

        Args:
            env: Environment to read; ``os.environ`` when None.

        Returns:
            The settings.

        Raises:
            InvalidParameterError: a variable is set to a value that is not a positive integer
                (or, for a switch, not true/false); the message names the variable.
        """
        env = os.environ if env is None else env
        return cls(
            workers=_positive_int(env, "PLANETS_WORKERS", cls.workers),
            ort_threads=_positive_int(env, "PLANETS_ORT_THREADS", cls.ort_threads),
            metrics=_flag(env, "PLANETS_METRICS", cls.metrics),
            access_log=_flag(env, "PLANETS_ACCESS_LOG", cls.access_log),
            max_upload_bytes=_positive_int(env, "PLANETS_MAX_UPLOAD_BYTES", cls.max_upload_bytes),
            max_batch=_positive_int(env, "PLANETS_MAX_BATCH", cls.max_batch),
        )
