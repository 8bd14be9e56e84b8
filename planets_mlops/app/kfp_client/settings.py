"""Where and how to reach the KFP API: flags over the environment, secrets masked."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from planets_mlops.errors import InvalidParameterError

DEFAULT_TIMEOUT = 10.0
DEFAULT_SERVICE_ACCOUNT = "planets-pipeline-runner"
"""The runs' service account that kustomize/base creates (Workload Identity on GKE)."""
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
        # KF_PIPELINES_ENDPOINT is what kfp.Client reads, and what Kubeflow Notebooks set.
        host = (host or env.get("KFP_HOST") or env.get("KF_PIPELINES_ENDPOINT") or "").strip()
        if not host:
            raise InvalidParameterError(
                "KFP host",
                host,
                "set",
                "Pass --host or set KFP_HOST (or KF_PIPELINES_ENDPOINT), e.g. "
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
            token=token or env.get("KFP_TOKEN") or _token_from_file(env),
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


@dataclass(frozen=True)
class RunSettings:
    """As whom and where a submitted run runs: its service account and pipeline root.

    Every run the CLI submits or schedules carries both; a monitoring run passes them on to
    the retraining runs its alert starts.
    """

    service_account: str | None = DEFAULT_SERVICE_ACCOUNT
    pipeline_root: str | None = None

    @classmethod
    def resolve(
        cls,
        service_account: str | None = None,
        pipeline_root: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> RunSettings:
        """Flags win over ``KFP_SERVICE_ACCOUNT`` / ``KFP_PIPELINE_ROOT``, then the defaults.

        An empty service account (``--service-account ""``) leaves the choice to the KFP
        server (``pipeline-runner``, or ``default-editor`` in a profile namespace); no
        pipeline root means the namespace's ``kfp-launcher`` ConfigMap.
        """
        env = os.environ if env is None else env
        account = (
            service_account
            if service_account is not None
            else env.get("KFP_SERVICE_ACCOUNT", DEFAULT_SERVICE_ACCOUNT)
        )
        root = pipeline_root or env.get("KFP_PIPELINE_ROOT") or None
        return cls(service_account=account.strip() or None, pipeline_root=root)


def _token_from_file(env: Mapping[str, str]) -> str | None:
    """The token in ``KF_PIPELINES_SA_TOKEN_PATH`` (a projected service-account token).

    Raises:
        InvalidParameterError: The variable names a file that cannot be read.
    """
    path = env.get("KF_PIPELINES_SA_TOKEN_PATH")
    if not path:
        return None
    try:
        return Path(path).read_text().strip() or None
    except OSError as exc:
        raise InvalidParameterError(
            "KF_PIPELINES_SA_TOKEN_PATH",
            path,
            "a readable token file",
            "Mount the pipelines service-account token there, or unset the variable.",
        ) from exc


def secret_values(*secrets: str | None) -> list[str]:
    """Every form in which a token or cookie header may come back in a server's text.

    The whole value, and for a cookie header each ``name=value`` pair and each value of 8
    or more characters (a server may quote one cookie only); longest first, so a longer
    form is replaced before a part of it.
    """
    found: set[str] = set()
    for secret in secrets:
        if not secret:
            continue
        found.add(secret)
        for pair in secret.split(";"):
            pair = pair.strip()
            _, _, value = pair.partition("=")
            found.update(p for p in (pair, value.strip()) if len(p) >= 8)
    return sorted(found, key=len, reverse=True)


def scrub_text(text: str, secrets: list[str]) -> str:
    """``text`` with each of ``secrets`` (from :func:`secret_values`) replaced by ``***``."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def scrub(text: str, settings: ConnectionSettings | None) -> str:
    """Remove the token and cookies from ``text`` (error bodies can echo headers)."""
    if settings is None:
        return text
    return scrub_text(text, secret_values(settings.token, settings.cookies))


def auth_headers(settings: ConnectionSettings) -> dict[str, str]:
    """The request headers that carry the credentials (never log them)."""
    headers = {"Accept": "application/json"}
    if settings.token:
        headers["Authorization"] = f"Bearer {settings.token}"
    if settings.cookies:
        headers["Cookie"] = settings.cookies
    return headers
