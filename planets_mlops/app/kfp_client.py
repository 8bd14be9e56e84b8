"""A thin wrapper over ``kfp.Client``: connection settings, fast failures, clear errors.

``kfp`` is imported inside functions only, so importing this module (and ``--help``) stays
cheap and the rest of ``planets_mlops`` stays free of ``kfp``.

Connection settings come from flags or the environment:

=================  ==========================================================
``KFP_HOST``        API endpoint, e.g. ``http://localhost:8080`` (port-forward of
                    ``ml-pipeline-ui``) or ``https://kubeflow.example.com/pipeline``
``KFP_NAMESPACE``   profile namespace on multi-user Kubeflow (unset: single-user)
``KFP_TOKEN``       bearer token (e.g. ``gcloud auth print-identity-token`` or a
                    service-account token)
``KFP_COOKIES``     cookie header instead, e.g. ``authservice_session=...`` (Dex)
``KFP_VERIFY_SSL``  ``false`` to skip TLS verification (test clusters only)
``KFP_CA_BUNDLE``   CA bundle (PEM) for a private certificate authority
``KFP_TIMEOUT``     seconds for connecting and for each API call (default 10)
=================  ==========================================================

Secrets (token, cookies) are never printed: :meth:`ConnectionSettings.describe` masks
them, and :func:`scrub` removes them from any error text.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from planets_mlops.errors import (
    InvalidParameterError,
    KubeflowConnectionError,
    KubeflowError,
    NotFoundError,
)

if TYPE_CHECKING:
    import kfp

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0
_FALSE = {"0", "false", "no", "off"}
_TRUE = {"1", "true", "yes", "on"}


def mask(secret: str | None) -> str:
    """What to print instead of a secret: whether it is set, never any of it."""
    return "***" if secret else "(unset)"


@dataclass(frozen=True)
class ConnectionSettings:
    """Where and how to reach the KFP API. ``repr`` and ``describe`` mask secrets."""

    host: str
    namespace: str | None = None
    token: str | None = field(default=None, repr=False)
    cookies: str | None = field(default=None, repr=False)
    verify_ssl: bool = True
    ca_bundle: str | None = None
    timeout: float = DEFAULT_TIMEOUT

    @classmethod
    def resolve(
        cls,
        host: str | None = None,
        namespace: str | None = None,
        token: str | None = None,
        cookies: str | None = None,
        verify_ssl: bool | None = None,
        ca_bundle: str | None = None,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ConnectionSettings:
        """Flags win over the environment.

        Raises:
            InvalidParameterError: No host, a host without http(s)://, a bad
                ``KFP_VERIFY_SSL`` or timeout, or a CA bundle that does not exist.
        """
        env = os.environ if env is None else env
        host = (host or env.get("KFP_HOST") or "").strip()
        if not host:
            raise InvalidParameterError(
                "KFP host",
                host,
                "set",
                "Pass --host or set KFP_HOST, e.g. "
                "http://localhost:8080 after `kubectl port-forward -n kubeflow "
                "svc/ml-pipeline-ui 8080:80`.",
            )
        if not re.match(r"^https?://[^/\s]+", host):
            raise InvalidParameterError(
                "KFP host",
                host,
                "a URL starting with http:// or https://",
                "e.g. https://kubeflow.example.com/pipeline",
            )
        if verify_ssl is None:
            raw = env.get("KFP_VERIFY_SSL", "true").strip().lower()
            if raw not in _FALSE | _TRUE:
                raise InvalidParameterError("KFP_VERIFY_SSL", raw, "true or false")
            verify_ssl = raw in _TRUE
        ca_bundle = ca_bundle or env.get("KFP_CA_BUNDLE") or None
        if ca_bundle and not Path(ca_bundle).is_file():
            raise InvalidParameterError(
                "KFP_CA_BUNDLE",
                ca_bundle,
                "an existing PEM file",
                "Point it at the cluster's CA certificate.",
            )
        if timeout is None:
            raw_timeout = env.get("KFP_TIMEOUT", str(DEFAULT_TIMEOUT))
            try:
                timeout = float(raw_timeout)
            except ValueError as exc:
                raise InvalidParameterError("KFP_TIMEOUT", raw_timeout, "a number of seconds") from exc
        if timeout <= 0:
            raise InvalidParameterError("timeout", timeout, "a positive number of seconds")
        return cls(
            host=host.rstrip("/"),
            namespace=namespace or env.get("KFP_NAMESPACE") or None,
            token=token or env.get("KFP_TOKEN") or None,
            cookies=cookies or env.get("KFP_COOKIES") or None,
            verify_ssl=verify_ssl,
            ca_bundle=ca_bundle,
            timeout=timeout,
        )

    def describe(self) -> str:
        """One line for progress output, secrets masked."""
        auth = (
            ("token " + mask(self.token))
            if self.token
            else ("cookies " + mask(self.cookies) if self.cookies else "no credentials")
        )
        tls = "" if self.verify_ssl else ", TLS verification OFF"
        ns = self.namespace or "(single-user)"
        return f"{self.host} namespace={ns} auth={auth}{tls}"


def scrub(text: str, settings: ConnectionSettings | None) -> str:
    """Remove the token and cookies from ``text`` (error bodies can echo headers)."""
    if settings is None:
        return text
    for secret in (settings.token, settings.cookies):
        if secret:
            text = text.replace(secret, "***")
    return text


def _auth_headers(settings: ConnectionSettings) -> dict[str, str]:
    headers = {"Accept": "application/json"}
    if settings.token:
        headers["Authorization"] = f"Bearer {settings.token}"
    if settings.cookies:
        headers["Cookie"] = settings.cookies
    return headers


def check_health(settings: ConnectionSettings) -> dict[str, Any]:
    """One short-timeout ``GET /apis/v2beta1/healthz`` before anything else.

    ``kfp.Client`` retries health checks 5 times, 5 s apart, and has no timeout of its
    own, so an unreachable host would hang for minutes; this fails in ``timeout`` seconds.

    Raises:
        KubeflowConnectionError: Unreachable, TLS failure, credentials refused or expired
            (401/403, or a redirect to a login page), or no KFP API at that path.
    """
    import requests

    url = f"{settings.host}/apis/v2beta1/healthz"
    verify: bool | str = settings.ca_bundle or settings.verify_ssl
    try:
        response = requests.get(
            url,
            headers=_auth_headers(settings),
            verify=verify,
            timeout=settings.timeout,
            allow_redirects=False,
        )
    except requests.exceptions.SSLError as exc:
        raise KubeflowConnectionError(
            f"TLS handshake with {settings.host} failed: {scrub(str(exc), settings)}. "
            "Set KFP_CA_BUNDLE to the cluster CA, or KFP_VERIFY_SSL=false on a test "
            "cluster."
        ) from exc
    except requests.exceptions.RequestException as exc:
        raise KubeflowConnectionError(
            f"Cannot reach Kubeflow Pipelines at {settings.host} within "
            f"{settings.timeout:g} s ({type(exc).__name__}). Check --host/KFP_HOST and that "
            "the port-forward or ingress is up."
        ) from exc
    if response.status_code in (401, 403):
        raise KubeflowConnectionError(
            f"Kubeflow Pipelines at {settings.host} refused the credentials (HTTP "
            f"{response.status_code}): the token or session cookie is missing, expired or "
            "not allowed in this namespace. Refresh KFP_TOKEN / KFP_COOKIES."
        )
    if 300 <= response.status_code < 400:
        raise KubeflowConnectionError(
            f"{settings.host} redirected to {response.headers.get('Location', '?')!s:.80} "
            f"(HTTP {response.status_code}): usually a login page, i.e. no or expired "
            "credentials. Set KFP_TOKEN or KFP_COOKIES."
        )
    if response.status_code == 404:
        raise KubeflowConnectionError(
            f"No KFP v2 API at {url} (HTTP 404). Check the host path, e.g. "
            "https://HOST/pipeline behind the Kubeflow gateway."
        )
    if response.status_code != 200:
        raise KubeflowConnectionError(
            f"KFP health check at {url} failed: HTTP {response.status_code} "
            f"{scrub(response.text[:200], settings)}"
        )
    try:
        body: dict[str, Any] = response.json()
    except ValueError as exc:
        raise KubeflowConnectionError(
            f"{url} answered with something other than JSON (a login page?). Check the host and credentials."
        ) from exc
    return body


def connect(settings: ConnectionSettings) -> kfp.Client:
    """Health-check, then build a ``kfp.Client`` whose every call has a timeout.

    Raises:
        KubeflowConnectionError: See :func:`check_health`.
    """
    start = time.monotonic()
    check_health(settings)
    import kfp

    with warnings.catch_warnings():
        # "This client only works with KFP v2.0.0-beta.2 and later": known, not news.
        warnings.simplefilter("ignore", FutureWarning)
        with translate_errors(settings, "connect"):
            client = kfp.Client(
                host=settings.host,
                namespace=settings.namespace or "kubeflow",
                existing_token=settings.token,
                cookies=settings.cookies,
                ssl_ca_cert=settings.ca_bundle,
                verify_ssl=settings.verify_ssl,
            )
    _apply_default_timeout(client, settings.timeout)
    logger.debug("connected to %s in %.2f s", settings.host, time.monotonic() - start)
    return client


def _apply_default_timeout(client: kfp.Client, timeout: float) -> None:
    # kfp.Client never passes _request_timeout, so urllib3 would wait forever on a stalled
    # server. All generated APIs share one ApiClient and one RESTClientObject. The REST
    # client only honours an int or a (connect, read) tuple: a float would be ignored.
    rest = client._run_api.api_client.rest_client
    original = rest.request
    default = (timeout, timeout)

    def request(*args: Any, _request_timeout: Any = None, **kwargs: Any) -> Any:
        return original(*args, _request_timeout=_request_timeout or default, **kwargs)

    rest.request = request


@contextlib.contextmanager
def translate_errors(settings: ConnectionSettings | None, action: str) -> Iterator[None]:
    """Turn kfp_server_api / urllib3 failures into the project's errors.

    401/403 -> KubeflowConnectionError, 404 -> NotFoundError, other HTTP errors ->
    KubeflowError, network failures -> KubeflowConnectionError. Secrets are scrubbed.
    """
    import kfp_server_api
    import urllib3

    try:
        yield
    except kfp_server_api.ApiException as exc:
        detail = scrub(_api_message(exc), settings)
        if exc.status in (401, 403):
            raise KubeflowConnectionError(
                f"Kubeflow Pipelines refused to {action} (HTTP {exc.status}): {detail}. "
                "The token or session cookie is missing, expired or lacks access to this "
                "namespace."
            ) from exc
        if exc.status == 404:
            raise NotFoundError(f"Not found while trying to {action}: {detail}") from exc
        raise KubeflowError(f"Kubeflow Pipelines failed to {action} (HTTP {exc.status}): {detail}") from exc
    except (urllib3.exceptions.HTTPError, OSError, TimeoutError) as exc:
        raise KubeflowConnectionError(
            f"Lost the connection to Kubeflow Pipelines while trying to {action}: "
            f"{type(exc).__name__}: {scrub(str(exc), settings)}"
        ) from exc


def _api_message(exc: Any) -> str:
    import json

    body = getattr(exc, "body", None) or ""
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    try:
        parsed = json.loads(body)
        return str(parsed.get("message") or parsed.get("error") or body)[:300]
    except (ValueError, AttributeError):
        return (str(body) or str(getattr(exc, "reason", exc)))[:300]


# ---------------------------------------------------------------------------- cron

_CRON_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("second", 0, 59, {}),
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day-of-month", 1, 31, {}),
    (
        "month",
        1,
        12,
        {
            m: i + 1
            for i, m in enumerate(
                [
                    "JAN",
                    "FEB",
                    "MAR",
                    "APR",
                    "MAY",
                    "JUN",
                    "JUL",
                    "AUG",
                    "SEP",
                    "OCT",
                    "NOV",
                    "DEC",
                ]
            )
        },
    ),
    (
        "day-of-week",
        0,
        6,
        {d: i for i, d in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])},
    ),
)
_CRON_DESCRIPTORS = {
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
}
_CRON_HELP = (
    "6 space-separated fields: second minute hour day-of-month month day-of-week (robfig/cron, as KFP uses)"
)
_CRON_FIX = (
    "e.g. '0 0 3 * * *' runs daily at 03:00:00, '0 30 2 * * MON' Mondays at "
    "02:30. A 5-field crontab needs a leading seconds field: '0 ' + it."
)


def validate_cron(expr: str) -> str:
    """Check a KFP cron expression locally; returns it with whitespace normalised.

    Raises:
        InvalidParameterError: Wrong number of fields, or a field out of range.
    """
    text = " ".join(str(expr).split())
    if text in _CRON_DESCRIPTORS:
        return text
    if text.startswith("@every "):
        if re.fullmatch(r"@every (\d+(\.\d+)?(ns|us|ms|s|m|h))+", text):
            return text
        raise InvalidParameterError("--cron", expr, "@every DURATION like @every 6h30m", _CRON_FIX)
    parts = text.split(" ")
    if len(parts) != 6:
        raise InvalidParameterError("--cron", expr, f"{_CRON_HELP}; got {len(parts)} field(s)", _CRON_FIX)
    for part, (name, low, high, names) in zip(parts, _CRON_FIELDS, strict=True):
        for item in part.split(","):
            if not _cron_item_ok(item, low, high, names, name):
                raise InvalidParameterError(
                    f"--cron {name} field",
                    part,
                    f"*, ?, N, N-M, */S or N-M/S with N, M in {low}-{high}",
                    _CRON_FIX,
                )
    return text


def _cron_item_ok(item: str, low: int, high: int, names: Mapping[str, int], field_name: str) -> bool:
    base, slash, step = item.partition("/")
    if slash and not (step.isdigit() and int(step) > 0):
        return False
    if base in ("*", "?"):
        return base == "*" or field_name in ("day-of-month", "day-of-week")

    def value(token: str) -> int | None:
        if token.upper() in names:
            return names[token.upper()]
        return int(token) if token.isdigit() else None

    start_s, dash, end_s = base.partition("-")
    start = value(start_s)
    end = value(end_s) if dash else start
    if start is None or end is None:
        return False
    return low <= start <= end <= high


# ---------------------------------------------------------------------- operations


def spec_of(pipeline_spec: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The pipeline spec of a stored version (it may wrap ``pipeline_spec`` and
    ``platform_spec`` when kfp-kubernetes settings are present).
    """
    if not pipeline_spec:
        return None
    if "root" in pipeline_spec:
        return dict(pipeline_spec)
    inner = pipeline_spec.get("pipeline_spec")
    return dict(inner) if isinstance(inner, Mapping) else None


def _list_all(fetch: Any, items_attr: str, page_size: int = 100) -> list[Any]:
    items: list[Any] = []
    token = ""
    while True:
        page = fetch(page_token=token, page_size=page_size)
        items.extend(getattr(page, items_attr) or [])
        token = getattr(page, "next_page_token", None) or ""
        if not token:
            return items


def find_pipeline_id(client: kfp.Client, name: str) -> str | None:
    """ID of the pipeline whose display name is ``name``, or None."""
    return client.get_pipeline_id(name)


def find_version(client: kfp.Client, pipeline_id: str, version_name: str) -> Any | None:
    """The version of ``pipeline_id`` named ``version_name``, or None."""
    versions = _list_all(
        lambda **kw: client.list_pipeline_versions(pipeline_id, sort_by="created_at desc", **kw),
        "pipeline_versions",
    )
    for version in versions:
        if version_name in (version.display_name, getattr(version, "name", None)):
            return version
    return None


def upload_version(
    client: kfp.Client,
    package: Path,
    pipeline_name: str,
    version_name: str,
    description: str | None = None,
    namespace: str | None = None,
) -> tuple[str, str, bool]:
    """Get-or-create the pipeline, then get-or-upload the version.

    Re-running with the same version name changes nothing (a retried CI job is safe).

    Returns:
        ``(pipeline_id, version_id, uploaded)``; ``uploaded`` is False when that version
        already existed.
    """
    import kfp_server_api

    pipeline_id = find_pipeline_id(client, pipeline_name)
    if pipeline_id is None:
        # Create the pipeline empty, so the only versions are the ones named by us
        # (upload_pipeline would add a first version named like the pipeline).
        created = client._pipelines_api.pipeline_service_create_pipeline(
            pipeline=kfp_server_api.V2beta1Pipeline(
                display_name=pipeline_name, description=description, namespace=namespace
            )
        )
        pipeline_id = created.pipeline_id
        logger.info("created pipeline %s (%s)", pipeline_name, pipeline_id)
    existing = find_version(client, pipeline_id, version_name)
    if existing is not None:
        return pipeline_id, existing.pipeline_version_id, False
    version = client.upload_pipeline_version(
        pipeline_package_path=str(package),
        pipeline_version_name=version_name,
        pipeline_id=pipeline_id,
        description=description,
    )
    return pipeline_id, version.pipeline_version_id, True


def resolve_version(client: kfp.Client, pipeline_name: str, version_name: str) -> tuple[str, Any]:
    """``(pipeline_id, version)`` of an uploaded version.

    Raises:
        NotFoundError: No such pipeline or version (says how to upload it).
    """
    pipeline_id = find_pipeline_id(client, pipeline_name)
    if pipeline_id is None:
        raise NotFoundError(
            f"Pipeline {pipeline_name!r} is not uploaded. Run `planets-mlops upload {pipeline_name}` first."
        )
    version = find_version(client, pipeline_id, version_name)
    if version is None:
        raise NotFoundError(
            f"Pipeline {pipeline_name!r} has no version {version_name!r}. "
            f"Run `planets-mlops upload {pipeline_name}` from that commit, "
            "or list versions in the UI (Pipelines -> "
            f"{pipeline_name})."
        )
    if version.pipeline_spec is None:
        # List responses may omit the spec; the single GET carries it.
        version = client.get_pipeline_version(pipeline_id, version.pipeline_version_id)
    return pipeline_id, version


def ensure_experiment(client: kfp.Client, name: str, namespace: str | None) -> str:
    """Get-or-create an experiment; returns its ID."""
    experiment = client.create_experiment(name=name, namespace=namespace)
    return str(experiment.experiment_id)


def replace_recurring_runs(client: kfp.Client, experiment_id: str, job_name: str, keep_id: str) -> list[str]:
    """Disable then delete every recurring run named ``job_name`` in the experiment
    except ``keep_id`` (recurring runs cannot be edited, only replaced).

    Returns:
        IDs of the recurring runs removed.
    """
    import json

    name_filter = json.dumps(
        {"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": job_name}]}
    )
    runs = _list_all(
        lambda **kw: client.list_recurring_runs(experiment_id=experiment_id, filter=name_filter, **kw),
        "recurring_runs",
    )
    removed = []
    for run in runs:
        # The filter is advisory here: older servers ignore it, so check the name too.
        if run.display_name != job_name or run.recurring_run_id == keep_id:
            continue
        client.disable_recurring_run(run.recurring_run_id)
        client.delete_recurring_run(run.recurring_run_id)
        removed.append(run.recurring_run_id)
    return removed
