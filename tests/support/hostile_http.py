"""A real HTTP server on 127.0.0.1 that misbehaves on purpose, for download limits.

Routes (``GET``):
    /image              a small valid PNG (``IMAGE``)
    /huge               ``HUGE`` bytes, declared in Content-Length, streamed in 1 MiB chunks
    /huge-chunked       the same without Content-Length (chunked transfer encoding)
    /drip               a PNG-sized body, one byte every ``DRIP_INTERVAL`` seconds
    /drip-headers       the status line, then header bytes one every ``DRIP_INTERVAL`` s
    /redirect?to=URL    302 to URL
    /loop               302 to /loop
    /health             200 ``OK`` (what a tracking server's health check asks)
    /api/...            (GET or POST) never answered: a stalled tracking server
    POST /drip          the drip above, after reading the request body (a slow webhook);
                        other POSTs are never answered
Every request is recorded (path and headers), and the bytes of body actually sent are
counted, so a test can tell a download that stopped early from one read to the end.
"""

from __future__ import annotations

import struct
import threading
import time
import urllib.parse
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HUGE = 400 * 1024 * 1024
DRIP_INTERVAL = 0.05
DRIP_BYTES = 2000  # 100 s at DRIP_INTERVAL
STALL_S = 120.0


def _png(width: int = 8, height: int = 8) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = b"".join(b"\x00" + bytes([(x * 30) % 256 for x in range(width)]) for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


IMAGE = _png()


@dataclass
class HostileServer:
    """Handle on a running server: its URL, the requests it saw and the body bytes it sent."""

    url: str
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    sent: dict[str, int] = field(default_factory=dict)

    @property
    def host_port(self) -> str:
        return self.url[len("http://") :]


def _handler(state: HostileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _count(self, route: str, n: int) -> None:
            state.sent[route] = state.sent.get(route, 0) + n

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            parsed = urllib.parse.urlsplit(self.path)
            state.requests.append((parsed.path, dict(self.headers)))
            route = parsed.path
            try:
                if route == "/image":
                    self._send(200, IMAGE)
                elif route in ("/huge", "/huge-chunked"):
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                    if route == "/huge":
                        self.send_header("Content-Length", str(HUGE))
                    else:
                        self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    block = b"\x00" * (1024 * 1024)
                    for _ in range(HUGE // len(block)):
                        if route == "/huge":
                            self.wfile.write(block)
                        else:
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(block), block))
                        self._count(route, len(block))
                    if route == "/huge-chunked":
                        self.wfile.write(b"0\r\n\r\n")
                elif route == "/drip":
                    self._drip(route)
                elif route == "/drip-headers":
                    self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                    for _ in range(DRIP_BYTES):
                        self.wfile.write(b"X")
                        self.wfile.flush()
                        self._count(route, 1)
                        time.sleep(DRIP_INTERVAL)
                elif route == "/redirect":
                    target = urllib.parse.parse_qs(parsed.query)["to"][0]
                    self._redirect(target)
                elif route == "/loop":
                    self._redirect("/loop")
                elif route == "/health":
                    self._send(200, b"OK")
                elif route.startswith("/api/"):
                    self._stall()
                else:
                    self._send(404, b"not found")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up, as it should

        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            route = urllib.parse.urlsplit(self.path).path
            state.requests.append((route, dict(self.headers)))
            if route != "/drip":
                self._stall()
                return
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                self._drip(route)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def _drip(self, route: str) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(DRIP_BYTES))
            self.end_headers()
            for _ in range(DRIP_BYTES):
                self.wfile.write(b"x")
                self.wfile.flush()
                self._count(route, 1)
                time.sleep(DRIP_INTERVAL)

        def _stall(self) -> None:
            time.sleep(STALL_S)

        def _redirect(self, target: str) -> None:
            self.send_response(302)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


@contextmanager
def hostile_server() -> Iterator[HostileServer]:
    """Start the server on a free port of 127.0.0.1; stop it after."""
    state = HostileServer(url="")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    # shutdown() waits for serve_forever's next poll: 0.5 s by default, once per test.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
