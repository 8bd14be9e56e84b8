"""The service's connection settings, as ``protocol.install`` applies them in a worker."""

from __future__ import annotations

import os

import pytest


def test_install_asks_libuv_to_accept_one_connection_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers share one listening socket: each accepts one connection, then yields to the other."""
    import uvicorn.config

    from planets_mlops.service import protocol
    from planets_mlops.service.settings import ServingSettings

    for name in ("auto", "httptools"):
        monkeypatch.setitem(uvicorn.config.HTTP_PROTOCOLS, name, uvicorn.config.HTTP_PROTOCOLS[name])
    monkeypatch.delenv("UV_TCP_SINGLE_ACCEPT", raising=False)
    protocol.install(ServingSettings())
    assert os.environ["UV_TCP_SINGLE_ACCEPT"] == "1"
    assert uvicorn.config.HTTP_PROTOCOLS["auto"].endswith(":GuardedHttpToolsProtocol")
    monkeypatch.setenv("UV_TCP_SINGLE_ACCEPT", "0")  # the operator's choice stands
    protocol.install(ServingSettings())
    assert os.environ["UV_TCP_SINGLE_ACCEPT"] == "0"


def test_lone_request_says_whether_the_worker_runs_one_request_or_more() -> None:
    """A real uvicorn server with the service's protocol: the coalescer's ``alone`` question."""
    import asyncio

    import uvicorn

    from planets_mlops.app.dev.net import free_port
    from planets_mlops.service import protocol

    port = free_port()
    seen: list[tuple[str, bool]] = []

    async def main() -> None:
        gate = asyncio.Event()

        async def app(scope: dict, receive: object, send: object) -> None:
            seen.append((scope["path"], protocol.lone_request()))
            if scope["path"] == "/held":
                await gate.wait()
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})  # type: ignore[operator]
            await send({"type": "http.response.body", "body": b"ok"})  # type: ignore[operator]

        config = uvicorn.Config(
            app, port=port, http=protocol.GuardedHttpToolsProtocol, lifespan="off", log_level="warning"
        )
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)

        async def get(path: str) -> bytes:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(f"GET {path} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
            answer = await reader.readuntil(b"ok")
            writer.close()
            return answer

        await get("/first")
        held = asyncio.create_task(get("/held"))
        while len(seen) < 2:
            await asyncio.sleep(0.01)
        await get("/beside")  # runs while /held waits
        gate.set()
        await held
        await get("/after")
        server.should_exit = True
        await serving

    asyncio.run(main())
    assert seen == [("/first", True), ("/held", True), ("/beside", False), ("/after", True)]
