"""Download the image of a Label Studio task within limits.

A task's image URL is outside input: whoever can create tasks chooses it, and a server it
names chooses the redirects and the body. So every download here

- reads at most ``max_bytes`` (a declared ``Content-Length`` or a ``gs://`` object size
  above it is refused before any byte of the body is read);
- finishes within ``deadline_s`` in total: name resolution, connecting, every redirect and
  every read share one deadline, so a server that drip-feeds bytes cannot hold it longer;
- connects only to public addresses: a host resolving to a private, loopback, link-local,
  multicast or reserved address is refused, on the first request and on every redirect,
  unless it is in ``allow_hosts``. The connection goes to the address that was checked, so
  a second DNS answer cannot swap it. The configured Label Studio server is trusted (the
  operator chose it), and only requests to it carry the API token.

Limits come from :class:`planets_mlops.knobs.ImageFetchParams`, on a pod from the
environment (:func:`limits_from_env`). Connections are direct: proxy variables are not used.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import http.client
import io
import ipaddress
import os
import socket
import ssl
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from planets_mlops.errors import InvalidParameterError, LabelStudioError
from planets_mlops.knobs import ImageFetchParams

MAX_BYTES_ENV = "PLANETS_FETCH_MAX_BYTES"
DEADLINE_ENV = "PLANETS_FETCH_DEADLINE_S"
MAX_REDIRECTS_ENV = "PLANETS_FETCH_MAX_REDIRECTS"
ALLOW_HOSTS_ENV = "PLANETS_FETCH_ALLOW_HOSTS"
_REDIRECTS = (301, 302, 303, 307, 308)
_CHUNK = 64 * 1024
# getaddrinfo has no timeout of its own: it runs here so the deadline holds for it too.
_RESOLVER = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="fetch-dns")


class ImageFetchError(LabelStudioError):
    """One task's image cannot be downloaded (missing, refused, too big, too slow)."""


class FetchStatusError(ImageFetchError):
    """The server answered with an HTTP status other than 200."""

    def __init__(self, message: str, status: int, trusted: bool) -> None:
        super().__init__(message)
        self.status = status
        self.trusted = trusted


@contextlib.contextmanager
def task_failure(url: str) -> Iterator[None]:
    """Every failure of one task's download as an :class:`ImageFetchError`, with its reason.

    The importer skips a task whose image raises :class:`ImageFetchError` and goes on; any
    other exception would abort the whole import (a ``gs://`` URL in a pod without GCS
    credentials, a URL the IDNA codec or the URL parser refuses, a storage client error
    of a type nobody listed). Only :class:`planets_mlops.errors.LabelStudioError` passes
    as it is: the configured server itself is down or refuses the token, which no task
    can fix.
    """
    try:
        yield
    except LabelStudioError:
        raise
    except Exception as exc:  # noqa: BLE001 - one task's failure must never abort the import
        raise ImageFetchError(f"Cannot download {str(url)[:300]!r}: {type(exc).__name__}: {exc}") from exc


def limits_from_env(env: Mapping[str, str] | None = None) -> ImageFetchParams:
    """:class:`ImageFetchParams` with the ``PLANETS_FETCH_*`` variables applied.

    Raises:
        InvalidParameterError: a variable is set to a value outside what it accepts (names
            the variable).
    """
    env = os.environ if env is None else env
    base = ImageFetchParams()
    values: dict[str, Any] = {}
    for name, field, kind in (
        (MAX_BYTES_ENV, "max_bytes", int),
        (DEADLINE_ENV, "deadline_s", float),
        (MAX_REDIRECTS_ENV, "max_redirects", int),
    ):
        raw = env.get(name, "").strip()
        if not raw:
            continue
        try:
            values[field] = kind(raw)
            ImageFetchParams(**{field: values[field]})
        except (ValueError, InvalidParameterError) as exc:
            raise InvalidParameterError(
                name, raw, f"a positive {kind.__name__}", f"Unset {name} for {getattr(base, field)}."
            ) from exc
    raw_hosts = env.get(ALLOW_HOSTS_ENV, "")
    hosts = tuple(h.strip() for h in raw_hosts.split(",") if h.strip())
    for host in hosts:
        try:
            _AllowEntry.parse(host)
        except ValueError as exc:
            raise InvalidParameterError(
                ALLOW_HOSTS_ENV,
                raw_hosts,
                "comma-separated host names, IP addresses or CIDR ranges, each optionally :port",
                f"Fix the entry {host!r}.",
            ) from exc
    return ImageFetchParams(**values, allow_hosts=hosts)


@dataclass(frozen=True)
class _AllowEntry:
    host: str | None
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None
    port: int | None

    @classmethod
    def parse(cls, entry: str) -> _AllowEntry:
        text, port = entry.strip(), None
        if text.startswith("["):  # [v6]:port or [v6]
            inner, _, rest = text[1:].partition("]")
            text = inner
            if rest.startswith(":"):
                port = int(rest[1:])
        elif text.count(":") == 1:
            text, _, port_text = text.partition(":")
            port = int(port_text)
        if port is not None and not 0 < port < 65536:
            raise ValueError(f"port {port} out of range")
        try:
            return cls(None, ipaddress.ip_network(text, strict=False), port)
        except ValueError:
            if not text or "/" in text or " " in text:
                raise
            return cls(text.lower().rstrip("."), None, port)

    def allows(self, host: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.network is not None:
            return address in self.network
        return host.lower().rstrip(".") == self.host


def _internal(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


def _remaining(deadline: float, url: str, limits: ImageFetchParams) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise ImageFetchError(
            f"Download of {url} took longer than {limits.deadline_s:g} s ({DEADLINE_ENV}); skipped."
        )
    return left


def _resolve(
    host: str, port: int, url: str, limits: ImageFetchParams, deadline: float, trusted: bool
) -> list[str]:
    """The addresses to connect to, after the private-address check."""
    try:
        literal = ipaddress.ip_address(host)
        addresses = [literal]
    except ValueError:
        future = _RESOLVER.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
        try:
            infos = future.result(timeout=_remaining(deadline, url, limits))
        except concurrent.futures.TimeoutError as exc:
            raise ImageFetchError(
                f"Resolving {host} for {url} took longer than {limits.deadline_s:g} s; skipped."
            ) from exc
        except OSError as exc:
            raise ImageFetchError(f"Cannot resolve {host} for {url}: {exc}") from exc
        addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
    if not trusted:
        entries = [_AllowEntry.parse(entry) for entry in limits.allow_hosts]
        for address in addresses:
            if _internal(address) and not any(e.allows(host, address, port) for e in entries):
                raise ImageFetchError(
                    f"Refusing {url}: {host} resolves to {address}, a private, loopback or "
                    f"link-local address. Serve task images from a public address or the "
                    f"Label Studio server, or allow the host in {ALLOW_HOSTS_ENV}."
                )
    return [str(address) for address in addresses]


class _DeadlineReader(io.RawIOBase):
    """Socket reads that each wait at most until the shared deadline."""

    def __init__(self, sock: socket.socket, remaining: Callable[[], float]) -> None:
        self._sock, self._remaining = sock, remaining

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        self._sock.settimeout(self._remaining())
        return self._sock.recv_into(buffer)


class _DeadlineSocket:
    """What ``http.client`` needs of a socket, with the deadline applied to every call."""

    def __init__(self, sock: socket.socket, remaining: Callable[[], float]) -> None:
        self._sock, self._remaining = sock, remaining

    def sendall(self, data: bytes) -> None:
        self._sock.settimeout(self._remaining())
        self._sock.sendall(data)

    def makefile(self, mode: str, *args: Any, **kwargs: Any) -> io.BufferedReader:
        return io.BufferedReader(_DeadlineReader(self._sock, self._remaining))

    def close(self) -> None:
        # http.client closes its socket while a response may still be read from it (a
        # "Connection: close" answer); the real socket is closed by fetch_http at the end.
        pass


class _PinnedConnection(http.client.HTTPSConnection):
    """HTTP(S) to one checked address; TLS still verifies the host name."""

    def __init__(
        self, scheme: str, host: str, addresses: list[str], port: int, remaining: Callable[[], float]
    ) -> None:
        self._tls = ssl.create_default_context()
        super().__init__(host, port, context=self._tls)
        self._scheme, self._addresses, self._remaining_fn = scheme, addresses, remaining
        self.raw_socket: socket.socket | None = None

    def connect(self) -> None:
        error: OSError | None = None
        for address in self._addresses:
            try:
                sock = socket.create_connection((address, self.port), timeout=self._remaining_fn())
                break
            except OSError as exc:
                error = exc
        else:
            raise error or OSError(f"no address for {self.host}")
        self.raw_socket = sock
        if self._scheme == "https":
            sock.settimeout(self._remaining_fn())
            sock = self._tls.wrap_socket(sock, server_hostname=self.host)
        self.raw_socket = sock
        self.sock = _DeadlineSocket(sock, self._remaining_fn)  # type: ignore[assignment]


def fetch_http(
    url: str,
    limits: ImageFetchParams,
    trusted_origin: tuple[str, str] | None = None,
    trusted_headers: Callable[[], dict[str, str]] | None = None,
) -> bytes:
    """The body of ``url`` (``http``/``https``), within ``limits``.

    Args:
        url: absolute http(s) URL.
        limits: byte cap, deadline, redirects, allowed internal hosts.
        trusted_origin: ``(scheme, netloc)`` of the configured Label Studio server: exempt
            from the address check, and the only origin that gets ``trusted_headers``.
        trusted_headers: headers (the API token) for requests to ``trusted_origin``.

    Raises:
        ImageFetchError: refused address, too many redirects, too big, too slow, a
            non-200 answer (:class:`FetchStatusError`), a URL that cannot be parsed or
            encoded, or a network error (:func:`task_failure`).
        LabelStudioError: the trusted server cannot be reached.
    """
    with task_failure(url):
        return _fetch_http(url, limits, trusted_origin, trusted_headers)


def _fetch_http(
    url: str,
    limits: ImageFetchParams,
    trusted_origin: tuple[str, str] | None,
    trusted_headers: Callable[[], dict[str, str]] | None,
) -> bytes:
    deadline = time.monotonic() + limits.deadline_s

    def remaining() -> float:
        return _remaining(deadline, url, limits)

    current = url
    for _ in range(limits.max_redirects + 1):
        parsed = urllib.parse.urlsplit(current)
        try:
            port = parsed.port or (443 if parsed.scheme == "https" else 80)
        except ValueError as exc:
            raise ImageFetchError(f"Bad image URL {current!r}: {exc}") from exc
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ImageFetchError(f"Refusing {current!r} (from {url}): only http(s) URLs are fetched.")
        trusted = trusted_origin is not None and (parsed.scheme, parsed.netloc) == trusted_origin
        addresses = _resolve(parsed.hostname, port, url, limits, deadline, trusted)
        connection = _PinnedConnection(parsed.scheme, parsed.hostname, addresses, port, remaining)
        headers = {"Accept": "*/*", "User-Agent": "planets-mlops"}
        if trusted and trusted_headers is not None:
            headers.update(trusted_headers())
        target = (parsed.path or "/") + (f"?{parsed.query}" if parsed.query else "")
        try:
            connection.request("GET", target, headers=headers)
            response = connection.getresponse()
            if response.status in _REDIRECTS:
                location = response.getheader("Location")
                if not location:
                    raise FetchStatusError(
                        f"Cannot download {url}: HTTP {response.status} without Location",
                        response.status,
                        trusted,
                    )
                current = urllib.parse.urljoin(current, location)
                continue
            if response.status != 200:
                raise FetchStatusError(
                    f"Cannot download {url}: HTTP {response.status}", response.status, trusted
                )
            return _read_body(response, url, limits)
        except TimeoutError as exc:
            _remaining(deadline, url, limits)  # raises the deadline message when it is spent
            raise ImageFetchError(f"Cannot download {url}: timed out") from exc
        except (OSError, http.client.HTTPException) as exc:
            if trusted and isinstance(exc, ConnectionError):
                raise LabelStudioError(
                    f"Cannot reach Label Studio at {current} while downloading {url}: {exc}. "
                    "Check that the server is running and reachable from here."
                ) from exc
            raise ImageFetchError(f"Cannot download {url}: {type(exc).__name__}: {exc}") from exc
        finally:
            connection.close()
            if connection.raw_socket is not None:
                connection.raw_socket.close()
    raise ImageFetchError(
        f"Refusing {url}: more than {limits.max_redirects} redirects ({MAX_REDIRECTS_ENV})."
    )


def _too_big(url: str, size: int | str, limits: ImageFetchParams) -> ImageFetchError:
    return ImageFetchError(
        f"Image {url} is {size} bytes, over the limit of {limits.max_bytes} bytes ({MAX_BYTES_ENV}); skipped."
    )


def _read_body(response: http.client.HTTPResponse, url: str, limits: ImageFetchParams) -> bytes:
    declared = response.getheader("Content-Length")
    if declared and declared.strip().isdigit() and int(declared) > limits.max_bytes:
        raise _too_big(url, int(declared), limits)
    body = bytearray()
    while True:
        chunk = response.read(min(_CHUNK, limits.max_bytes + 1 - len(body)))
        if not chunk:
            break
        body += chunk
        if len(body) > limits.max_bytes:
            raise _too_big(url, f"more than {limits.max_bytes}", limits)
    if not body:
        raise ImageFetchError(f"Cannot download {url}: empty body")
    return bytes(body)


def fetch_gcs(url: str, limits: ImageFetchParams) -> bytes:
    """The object at ``gs://bucket/name``, refused before download when over ``max_bytes``.

    The size is read from the object's metadata and the download is pinned to that
    generation, so the object cannot be swapped for a bigger one in between.

    Raises:
        ImageFetchError: bad URL, missing object, too big, no GCS credentials, or any
            storage error (:func:`task_failure`).
    """
    with task_failure(url):
        return _fetch_gcs(url, limits)


def _fetch_gcs(url: str, limits: ImageFetchParams) -> bytes:
    from google.api_core import exceptions as gexc
    from google.cloud.storage.retry import DEFAULT_RETRY

    from planets_mlops.storage import make_client

    bucket_name, _, name = url[len("gs://") :].partition("/")
    if not bucket_name or not name:
        raise ImageFetchError(f"Bad gs:// URL {url!r}: expected gs://bucket/object")
    deadline = time.monotonic() + limits.deadline_s
    try:
        bucket = make_client().bucket(bucket_name)
        left = _remaining(deadline, url, limits)
        blob = bucket.get_blob(name, timeout=left, retry=DEFAULT_RETRY.with_timeout(left))
        if blob is None:
            raise ImageFetchError(f"Image {url} not found")
        if blob.size is None or blob.size > limits.max_bytes:
            raise _too_big(url, blob.size if blob.size is not None else "an unknown number of", limits)
        left = _remaining(deadline, url, limits)
        data = blob.download_as_bytes(
            if_generation_match=blob.generation,
            timeout=left,
            retry=DEFAULT_RETRY.with_timeout(left),
        )
    except gexc.NotFound as exc:
        raise ImageFetchError(f"Image {url} not found") from exc
    except gexc.GoogleAPIError as exc:
        raise ImageFetchError(f"Cannot read {url}: {exc}") from exc
    if len(data) > limits.max_bytes:
        raise _too_big(url, len(data), limits)
    return bytes(data)
