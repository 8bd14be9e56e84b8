"""HTTP connection limits below the ASGI app: request-head timeout and size, keep-alive.

uvicorn (as BentoML 1.4 starts it) has no timeout for reading a request head: a client
that opens a connection and sends its headers a byte at a time, or not at all, holds the
connection forever (slowloris), and the httptools parser has no size limit for a head.
BentoML builds the ``uvicorn.Config`` of each worker itself and passes only
``timeout_keep_alive`` through, so these limits cannot be set as options. uvicorn does
accept a custom protocol class for ``http=``; :func:`install` points its ``auto`` and
``httptools`` protocols at :class:`GuardedHttpToolsProtocol`, which adds:

* a head deadline (``PLANETS_HEADER_TIMEOUT_S``): armed when a connection opens and when
  the first byte of a later request arrives, disarmed when a complete head has arrived. When it passes, the
  client gets ``408`` and the connection is closed;
* a head size cap (``PLANETS_MAX_HEADER_BYTES``): more bytes than that without a
  complete head gets ``431`` and the connection is closed;
* the keep-alive idle timeout (``PLANETS_KEEP_ALIVE_S``).

The service module calls :func:`install` when it is imported, which in every BentoML
worker happens before uvicorn loads its protocol class.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from planets_mlops.service.settings import ServingSettings

_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}
# uvicorn's set of this worker's running request tasks (its ServerState.tasks), once a
# connection has opened: a task is added when a request head is complete, before the app
# starts, and leaves when the app is done.
_RUNNING: list[set[Any]] = []


def lone_request() -> bool:
    """Whether the worker is running one request only (the caller's); False before any connection."""
    return bool(_RUNNING) and len(_RUNNING[0]) <= 1


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline and a size cap on each request head."""

    header_timeout_s: float = ServingSettings.header_timeout_s
    max_header_bytes: int = ServingSettings.max_header_bytes
    keep_alive_s: float = ServingSettings.keep_alive_s

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timeout_keep_alive = self.keep_alive_s  # type: ignore[assignment]  # call_later takes a float
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        self._in_head = False
        _RUNNING[:] = [self.tasks]

    def _arm_head(self) -> None:
        self._disarm_head()
        self._in_head = True
        self._head_bytes = 0
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _disarm_head(self) -> None:
        self._in_head = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _refuse(self, status: int, message: str) -> None:
        self._disarm_head()
        if self.transport.is_closing():
            return
        body = message.encode()
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (status, _REASONS[status], len(body), body)
        )
        self.transport.close()

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._in_head:
            self._refuse(
                408,
                f"Request head not received within {self.header_timeout_s:g} s (PLANETS_HEADER_TIMEOUT_S).",
            )

    # uvicorn protocol interface
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the head deadline of the first request.

        Args:
            transport: The new connection.
        """
        super().connection_made(transport)
        self._arm_head()

    def connection_lost(self, exc: Exception | None) -> None:
        """Drop the head deadline with the connection.

        Args:
            exc: Why the connection ended (None: closed normally).
        """
        self._disarm_head()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Count head bytes, parse, and refuse a head over the size cap with 431.

        Args:
            data: Bytes received on the connection.
        """
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._in_head and self._head_bytes > self.max_header_bytes:
            self._refuse(
                431,
                f"Request head larger than {self.max_header_bytes} bytes (PLANETS_MAX_HEADER_BYTES).",
            )

    def on_message_begin(self) -> None:
        """Start the head deadline at the first byte of a later request on the connection.

        For the first request the deadline runs from the connection already; idle
        keep-alive time is uvicorn's own timeout.
        """
        if not self._in_head:
            self._arm_head()
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        """A complete head arrived in time: stop its deadline, then let uvicorn run the app."""
        self._disarm_head()
        super().on_headers_complete()


def install(settings: ServingSettings) -> None:
    """Make uvicorn use :class:`GuardedHttpToolsProtocol` with ``settings``' limits.

    Also asks libuv (uvloop) to accept one connection at a time (``UV_TCP_SINGLE_ACCEPT``,
    read when the worker starts listening, after this): on a listening socket that
    workers share, the first to wake would otherwise accept every pending connection.
    Set to 0 to turn it off. It was not enough to spread keep-alive connections opened
    together (one worker took all 8 of a load test in 5 of 6 runs), so workers past the
    first now listen on sockets of their own (:mod:`.listening`).
    """
    import uvicorn.config

    os.environ.setdefault("UV_TCP_SINGLE_ACCEPT", "1")

    GuardedHttpToolsProtocol.header_timeout_s = settings.header_timeout_s
    GuardedHttpToolsProtocol.max_header_bytes = settings.max_header_bytes
    GuardedHttpToolsProtocol.keep_alive_s = settings.keep_alive_s
    target = f"{__name__}:{GuardedHttpToolsProtocol.__name__}"
    uvicorn.config.HTTP_PROTOCOLS["auto"] = target
    uvicorn.config.HTTP_PROTOCOLS["httptools"] = target
