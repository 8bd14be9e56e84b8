"""Serving settings, read from the environment once per process, all validated together.

Read at import time on purpose: ``@bentoml.service(...)`` needs the worker count and the
metrics/access-log/tracing switches when the class is decorated, and the supervisor and every
worker must agree on them. Each bad value raises an error naming the variable, its value,
what is allowed and how to fix it. BentoML replaces an error raised while it imports the
service with an unrelated one ("No module named ..."), so the launchers
(:mod:`planets_mlops.app.dev.serve_local`, :mod:`planets_mlops.serving_entrypoint`) call
:func:`ServingSettings.from_env` before starting ``bentoml serve``, and the service module
prints the error to stderr before raising it.

The table of every limit, with what it protects, is in docs/serving.md ("Limits").
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from planets_mlops.errors import InvalidParameterError
from planets_mlops.knobs import MonitoringParams

PREFIX = "PLANETS_"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _flag(raw: str, name: str, default: bool) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InvalidParameterError(name, raw, "true or false", f"Set env {name}=true or {name}=false.")


def _positive_int(raw: str, name: str, default: int) -> int:
    try:
        value = int(raw.strip().replace("_", ""))
    except ValueError:
        value = 0
    if value <= 0:
        raise InvalidParameterError(
            name,
            raw,
            "a positive integer",
            f"Unset {name} for the default {default}, or set e.g. {name}={default}.",
        )
    return value


def _positive_seconds(raw: str, name: str, default: float) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        value = 0.0
    if not (math.isfinite(value) and value > 0):
        raise InvalidParameterError(
            name,
            raw,
            "a positive, finite number of seconds",
            f"Unset {name} for the default {default:g}, or set e.g. {name}={default:g}.",
        )
    return value


def _text(raw: str, name: str, default: str) -> str:
    return raw.strip()


def _share(raw: str, name: str, default: float) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        value = math.nan
    if not 0 < value <= 1:
        raise InvalidParameterError(
            name, raw, "a share in (0, 1]", f"Set {name}=1 to record every image, {name}=0.1 for one in ten."
        )
    return value


_PARSERS: dict[type, Callable[[str, str, Any], Any]] = {
    bool: _flag,
    int: _positive_int,
    float: _positive_seconds,
    str: _text,
}
# Fields whose kind is not their type's (a share is a float, but not seconds).
_FIELD_PARSERS: dict[str, Callable[[str, str, Any], Any]] = {"monitoring_sample": _share}


@dataclass(frozen=True)
class ServingSettings:
    """Knobs of the service; defaults are the fastest measured on 2 cores (docs/serving.md).

    Each field is read from ``PLANETS_<FIELD NAME IN UPPER CASE>``.

    Attributes:
        workers: BentoML worker processes (default 2).
        ort_threads: ONNX Runtime intra- and inter-op threads per worker (default 1: more
            oversubscribes 2 cores).
        metrics: BentoML's Prometheus metrics on /metrics (default off).
        access_log: BentoML's per-request access log (default off).
        tracing: BentoML's OpenTelemetry server span around each request (default off:
            no span is then started; on, BentoML's ``tracing`` configuration applies, and
            nothing leaves the worker without an exporter set there).
        max_upload_bytes: largest request body accepted (default 10 MiB); larger bodies
            get HTTP 413.
        max_batch: most images in one ``/predict_batch`` call (64).
        max_request_pixels: most pixels, summed over the images of one request as their
            headers declare them, before anything is decoded (default 16 MP, e.g. 64 images
            of 512x512); more gets HTTP 413.
        inline_decode_pixels: requests with at most this many pixels in all are decoded on
            the event loop (a thread hop costs more than a 128x128 decode); heavier ones go
            to the decode threads (default 262,144 = 64 images of 64x64).
        decode_threads: threads per worker decoding heavy requests (default 1).
        decode_queue: heavy requests one worker accepts at once, decoding or waiting
            (default 4); more get HTTP 429 with ``Retry-After``.
        decode_timeout_s: deadline of a heavy request's decoding, from its arrival
            (default 10 s); past it the request gets HTTP 429 and its decoding stops after
            the image in progress.
        header_timeout_s: time a client has to send a complete request head, from the
            connection or from the end of the previous answer (default 10 s); then the
            connection is closed (slow-header clients).
        max_header_bytes: largest request head (default 64 KiB); more gets HTTP 431.
        keep_alive_s: idle keep-alive connections are closed after this (default 5 s).
        body_timeout_s: time a client has to send the whole body (default 20 s); then
            HTTP 408 and its spooled upload is freed.
        uploads_in_flight: bodies one worker receives at once (default 16); more get
            HTTP 429, so spooled uploads never hold more than ``uploads_in_flight *
            max_upload_bytes`` per worker.
        monitoring_uri: where prediction records go, a local folder or
            ``gs://BUCKET/PREFIX`` (default empty: no records; docs/monitoring.md).
        monitoring_sample: share of served images recorded, in (0, 1] (default 1).
        monitoring_batch_records: records per object (default 1000, at most 10,000).
        monitoring_batch_age_s: longest a record waits before its batch is written
            (default 60 s).
        monitoring_queue_images: images waiting for the record writer at most (default
            4096); more are dropped and counted (``/metadata`` ``monitoring``).
    """

    workers: int = 2
    ort_threads: int = 1
    metrics: bool = False
    access_log: bool = False
    tracing: bool = False
    max_upload_bytes: int = 10 * 1024 * 1024
    max_batch: int = 64
    max_request_pixels: int = 16 * 1024 * 1024
    inline_decode_pixels: int = 64 * 64 * 64
    decode_threads: int = 1
    decode_queue: int = 4
    decode_timeout_s: float = 10.0
    header_timeout_s: float = 10.0
    max_header_bytes: int = 64 * 1024
    keep_alive_s: float = 5.0
    body_timeout_s: float = 20.0
    uploads_in_flight: int = 16
    monitoring_uri: str = ""
    monitoring_sample: float = MonitoringParams.sample
    monitoring_batch_records: int = MonitoringParams.batch_records
    monitoring_batch_age_s: float = MonitoringParams.batch_age_s
    monitoring_queue_images: int = MonitoringParams.queue_images

    @staticmethod
    def variable(field_name: str) -> str:
        """The environment variable of a field: ``max_batch`` -> ``PLANETS_MAX_BATCH``."""
        return PREFIX + field_name.upper()

    @classmethod
    def variables(cls) -> dict[str, Any]:
        """Every variable the service reads -> its default."""
        return {cls.variable(f.name): f.default for f in fields(cls)}

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServingSettings:
        """Read and validate every ``PLANETS_*`` serving variable of ``env``.

        An empty value means the default for numbers (and false for switches).

        Args:
            env: Environment to read; ``os.environ`` when None.

        Returns:
            The settings.

        Raises:
            InvalidParameterError: a value is not of its kind (positive integer, positive
                seconds, true/false), or an inbox variable (``PLANETS_INBOX*``) is bad; the
                message names the variable, the value and the fix.
        """
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = cls.variable(f.name)
            raw = env.get(name)
            if raw is None or (raw.strip() == "" and f.type != "bool"):
                continue
            parse = _FIELD_PARSERS.get(f.name) or _PARSERS[type(f.default)]
            values[f.name] = parse(raw, name, f.default)
        settings = cls(**values)
        try:
            settings.monitoring()
        except InvalidParameterError as exc:
            field_name = f"monitoring_{exc.name}"
            allowed = str(exc).partition("must be ")[2].rstrip(".")
            raise InvalidParameterError(cls.variable(field_name), exc.value, allowed) from exc
        if settings.monitoring_uri.startswith("gs://") and not settings.monitoring_uri[5:].strip("/"):
            raise InvalidParameterError(
                cls.variable("monitoring_uri"),
                settings.monitoring_uri,
                "gs://BUCKET/PREFIX or a local folder",
                "Name the bucket, e.g. PLANETS_MONITORING_URI=gs://my-bucket/monitoring.",
            )
        # The inbox's variables (PLANETS_INBOX*) are read by the worker, but checked here, at
        # start-up, so a bad one stops the launcher instead of restarting workers in a loop.
        from planets_mlops.inbox import params_from_env as inbox_params

        inbox_params(env)
        if settings.inline_decode_pixels > settings.max_request_pixels:
            raise InvalidParameterError(
                cls.variable("inline_decode_pixels"),
                settings.inline_decode_pixels,
                f"at most PLANETS_MAX_REQUEST_PIXELS ({settings.max_request_pixels})",
                "Lower it, or raise PLANETS_MAX_REQUEST_PIXELS.",
            )
        return settings

    def monitoring(self) -> MonitoringParams:
        """The record writer's parameters (checked by :class:`planets_mlops.knobs.MonitoringParams`)."""
        return MonitoringParams(
            sample=self.monitoring_sample,
            batch_records=self.monitoring_batch_records,
            batch_age_s=self.monitoring_batch_age_s,
            queue_images=self.monitoring_queue_images,
        )

    @classmethod
    def unknown_variables(cls, env: Mapping[str, str] | None = None) -> list[str]:
        """``PLANETS_*`` names in ``env`` that are no serving setting, each with a hint.

        Other tools of the project read ``PLANETS_*`` variables too (e.g.
        ``PLANETS_IMAGE_REGISTRY`` at compile time), so these are warnings, not errors.
        """
        from planets_mlops.inbox import ENV_VARIABLES as INBOX_VARIABLES

        env = os.environ if env is None else env
        known = [*cls.variables(), *INBOX_VARIABLES]
        hints = []
        for name in sorted(n for n in env if n.startswith(PREFIX) and n not in known):
            close = difflib.get_close_matches(name, known, n=1)
            hints.append(f"{name} (did you mean {close[0]}?)" if close else name)
        return hints
