"""Serving settings, read from the environment once per process, all validated together.

Read at import time on purpose: ``@bentoml.service(...)`` needs the worker count and the
metrics/access-log switches when the class is decorated, and the supervisor and every
worker must agree on them. Each bad value raises an error naming the variable, its value,
what is allowed and how to fix it. BentoML replaces an error raised while it imports the
service with an unrelated one ("No module named ..."), so the launchers
(:mod:`planets_mlops.serve_local`, :mod:`planets_mlops.serving_entrypoint`) call
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


_PARSERS: dict[type, Callable[[str, str, Any], Any]] = {
    bool: _flag,
    int: _positive_int,
    float: _positive_seconds,
}


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
    """

    workers: int = 2
    ort_threads: int = 1
    metrics: bool = False
    access_log: bool = False
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
                seconds, true/false); the message names the variable, the value and the fix.
        """
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = cls.variable(f.name)
            raw = env.get(name)
            if raw is None or (raw.strip() == "" and f.type != "bool"):
                continue
            values[f.name] = _PARSERS[type(f.default)](raw, name, f.default)
        settings = cls(**values)
        if settings.inline_decode_pixels > settings.max_request_pixels:
            raise InvalidParameterError(
                cls.variable("inline_decode_pixels"),
                settings.inline_decode_pixels,
                f"at most PLANETS_MAX_REQUEST_PIXELS ({settings.max_request_pixels})",
                "Lower it, or raise PLANETS_MAX_REQUEST_PIXELS.",
            )
        return settings

    @classmethod
    def unknown_variables(cls, env: Mapping[str, str] | None = None) -> list[str]:
        """``PLANETS_*`` names in ``env`` that are no serving setting, each with a hint.

        Other tools of the project read ``PLANETS_*`` variables too (e.g.
        ``PLANETS_IMAGE_REGISTRY`` at compile time), so these are warnings, not errors.
        """
        env = os.environ if env is None else env
        known = cls.variables()
        hints = []
        for name in sorted(n for n in env if n.startswith(PREFIX) and n not in known):
            close = difflib.get_close_matches(name, list(known), n=1)
            hints.append(f"{name} (did you mean {close[0]}?)" if close else name)
        return hints
