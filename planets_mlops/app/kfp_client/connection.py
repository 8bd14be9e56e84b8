"""The connection: one fast health check, then a ``kfp.Client`` whose calls time out.

Also the translation of ``kfp_server_api`` / ``urllib3`` failures into the project's
errors, with secrets scrubbed, and the paging helper every listing uses.
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from planets_mlops.app.kfp_client.settings import ConnectionSettings, auth_headers, scrub
from planets_mlops.errors import KubeflowConnectionError, KubeflowError, NotFoundError

if TYPE_CHECKING:
    import kfp

logger = logging.getLogger(__name__)


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
            headers=auth_headers(settings),
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


def list_all(fetch: Callable[..., Any], items_attr: str, page_size: int = 100) -> list[Any]:
    """Every item of a paged KFP listing (``fetch(page_token=, page_size=)``)."""
    items: list[Any] = []
    token = ""
    while True:
        page = fetch(page_token=token, page_size=page_size)
        items.extend(getattr(page, items_attr) or [])
        token = getattr(page, "next_page_token", None) or ""
        if not token:
            return items
