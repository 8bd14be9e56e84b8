"""Where the MLflow tracking server is, and a fast check that it answers.

The URI comes from ``MLFLOW_TRACKING_URI``; credentials from MLflow's own variables
(``MLFLOW_TRACKING_TOKEN``, or ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD``),
which the MLflow client reads itself. On a cluster the Kubernetes Secret ``mlflow-tracking``
(``docs/registry.md``) arrives as ``PLANETS_MLFLOW_*`` (:data:`SECRET_ENV`), so that it
never defines a variable twice next to KFP's MLflow plugin, which sets MLflow's own;
:func:`adopt_secret_env` turns them into MLflow's where the plugin set none. The client's
own retries (7 by default, with backoff: minutes against a dead server) and its per-request
timeout (120 s) are cut down (:func:`bounded_requests`) so that one call against a stalled
server fails within :func:`call_budget_s` (3 x 2 x ``timeout_s`` + 3 s: 33 s at the default
5 s), not minutes.
"""

from __future__ import annotations

import base64
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from planets_mlops.errors import InvalidParameterError, TrackingError
from planets_mlops.knobs import RegistryParams

log = logging.getLogger(__name__)

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
CREDENTIAL_ENV = ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
SECRET_ENV = {key: f"PLANETS_{key}" for key in (TRACKING_URI_ENV, *CREDENTIAL_ENV)}
"""Keys of the ``mlflow-tracking`` Secret -> the variables a step gets them as."""


def secret_env(env: Mapping[str, str]) -> dict[str, str]:
    """MLflow's variables that ``env``'s ``PLANETS_MLFLOW_*`` add (the plugin's win).

    The Secret's URI applies when no ``MLFLOW_TRACKING_URI`` is set (the plugin is off).
    Its credentials apply only while the URI in effect is the Secret's: they are never sent
    to the plugin's server when that is another one.
    """
    ours = env.get(SECRET_ENV[TRACKING_URI_ENV], "").strip()
    current = env.get(TRACKING_URI_ENV, "").strip()
    added = {}
    if ours and not current:
        added[TRACKING_URI_ENV] = ours
    if not current or current.rstrip("/") == ours.rstrip("/"):
        for key in CREDENTIAL_ENV:
            value = env.get(SECRET_ENV[key], "")
            if value and not env.get(key):
                added[key] = value
    return added


def adopt_secret_env() -> dict[str, str]:
    """Set in this process the MLflow variables :func:`secret_env` adds; returns them."""
    added = secret_env(os.environ)
    os.environ.update(added)
    if added:
        log.info("MLflow settings from the mlflow-tracking Secret: %s", sorted(added))
    return added


FIX = (
    "Start the server or fix MLFLOW_TRACKING_URI (on a cluster: the mlflow-tracking Secret, "
    "docs/registry.md); run with tracking=False to work without a registry, or "
    "allow_untracked=True to package without registering."
)


@dataclass(frozen=True)
class TrackingSettings:
    """The tracking server of this process.

    Attributes:
        tracking_uri: ``http(s)://host:port`` of an MLflow server (or any URI MLflow takes).
        timeout_s: Seconds for the reachability check and for each request.
    """

    tracking_uri: str
    timeout_s: float = RegistryParams.timeout_s

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, timeout_s: float = RegistryParams.timeout_s
    ) -> TrackingSettings:
        """Settings from ``MLFLOW_TRACKING_URI``.

        Raises:
            InvalidParameterError: the variable is not set or is not a URI.
        """
        if env is None:
            adopt_secret_env()
            env = os.environ
        else:
            env = {**env, **secret_env(env)}
        uri = env.get(TRACKING_URI_ENV, "").strip()
        if not uri:
            raise InvalidParameterError(
                TRACKING_URI_ENV,
                uri,
                "the URL of an MLflow tracking server, e.g. http://127.0.0.1:5000",
                "Set MLFLOW_TRACKING_URI (on a cluster the mlflow-tracking Secret provides it), or run "
                "with tracking=False.",
            )
        if "://" not in uri and not uri.startswith(("databricks", "file:")):
            raise InvalidParameterError(
                TRACKING_URI_ENV, uri, "a URI such as http://mlflow.kubeflow.svc:5000", FIX
            )
        return cls(tracking_uri=uri.rstrip("/"), timeout_s=timeout_s)

    @property
    def is_http(self) -> bool:
        """True for an ``http(s)://`` server (the one kind the reachability check probes)."""
        return self.tracking_uri.startswith(("http://", "https://"))

    @property
    def shown_uri(self) -> str:
        """The URI as messages show it: a password in it is replaced by ``***``."""
        return redact_uri(self.tracking_uri)

    def _headers(self) -> dict[str, str]:
        token = os.environ.get("MLFLOW_TRACKING_TOKEN")
        if token:
            return {"Authorization": f"Bearer {token}"}
        user, password = (
            os.environ.get("MLFLOW_TRACKING_USERNAME"),
            os.environ.get("MLFLOW_TRACKING_PASSWORD"),
        )
        if user and password:
            pair = base64.b64encode(f"{user}:{password}".encode()).decode()
            return {"Authorization": f"Basic {pair}"}
        return {}

    def check_reachable(self) -> None:
        """Fail in ``timeout_s`` seconds unless the server answers its ``/health`` endpoint.

        Raises:
            TrackingError: no answer, an error status, or refused credentials; the message
                names the URI and the fix.
        """
        if not self.is_http:
            return
        request = urllib.request.Request(f"{self.tracking_uri}/health", headers=self._headers())
        opener = urllib.request.build_opener()
        if self.tracking_uri.startswith("http://127.0.0.1") or self.tracking_uri.startswith(
            "http://localhost"
        ):
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=self.timeout_s) as response:
                if response.status != 200:
                    raise TrackingError(
                        f"MLflow tracking server {self.shown_uri!r} answered {response.status} to "
                        f"/health. {FIX}"
                    )
        except urllib.error.HTTPError as exc:
            hint = (
                " The credentials were refused (MLFLOW_TRACKING_TOKEN / _USERNAME / _PASSWORD)."
                if exc.code in (401, 403)
                else ""
            )
            raise TrackingError(
                f"MLflow tracking server {self.shown_uri!r} answered {exc.code} to /health.{hint} {FIX}"
            ) from exc
        except (OSError, ValueError) as exc:
            raise TrackingError(
                f"MLflow tracking server {self.shown_uri!r} is unreachable ({exc}) after "
                f"{self.timeout_s:g} s. {FIX}"
            ) from exc

    def client(self) -> Any:
        """An ``MlflowClient`` on this server, after the reachability check.

        Raises:
            TrackingError: the server does not answer (see :meth:`check_reachable`).
        """
        self.check_reachable()
        bounded_requests(self.timeout_s)
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)


def redact_uri(uri: str) -> str:
    """``uri`` with the password of its user part replaced by ``***`` (for messages and logs)."""
    import urllib.parse

    try:
        parts = urllib.parse.urlsplit(uri)
    except ValueError:
        return "<unparsable URI>"
    if parts.password is None:
        return uri
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


# MLflow reads its HTTP settings from the environment at each request. The values this
# module set, so that a later client with another timeout replaces them, while a value an
# operator set is left alone.
_SET_HERE: dict[str, str] = {}
RETRIES = 2
BACKOFF_S = 1  # MLflow reads it as an integer


def bounded_requests(timeout_s: float) -> None:
    """Few retries, a short backoff and a per-request timeout of ``2 x timeout_s`` for MLflow.

    Variables an operator set (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, ``..._BACKOFF_FACTOR``,
    ``..._TIMEOUT``) are kept.
    """
    wanted = {
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(RETRIES),
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": str(BACKOFF_S),
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(max(1, round(2 * timeout_s))),
    }
    for name, value in wanted.items():
        if name not in os.environ or os.environ[name] == _SET_HERE.get(name):
            os.environ[name] = _SET_HERE[name] = value


def call_budget_s(timeout_s: float) -> float:
    """The longest one MLflow call takes against a stalled server, with :func:`bounded_requests`."""
    backoff = sum(BACKOFF_S * 2**attempt for attempt in range(RETRIES))
    return (RETRIES + 1) * max(1, round(2 * timeout_s)) + backoff


def connect(
    params: RegistryParams, env: Mapping[str, str] | None = None, step: str = "this step"
) -> Any | None:
    """The client for ``params``, or None when tracking is off or untracked work is allowed.

    Args:
        params: The registry knobs (``tracking``, ``allow_untracked``, ``timeout_s``).
        env: Where ``MLFLOW_TRACKING_URI`` is read (default: the process environment).
        step: Named in the warning logged when the server is skipped.

    Returns:
        An ``MlflowClient``; None with ``tracking`` off, or with ``allow_untracked`` when the
        server is missing or unreachable (a warning says so).

    Raises:
        TrackingError: the server is unreachable and ``allow_untracked`` is off.
        InvalidParameterError: ``MLFLOW_TRACKING_URI`` is not set and ``allow_untracked`` is off.
    """
    if not params.tracking:
        return None
    try:
        return TrackingSettings.from_env(env, params.timeout_s).client()
    except (TrackingError, InvalidParameterError) as exc:
        if not params.allow_untracked:
            raise
        log.warning("%s continues without tracking (allow_untracked=True): %s", step, exc)
        return None
