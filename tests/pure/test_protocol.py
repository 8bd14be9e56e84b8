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
