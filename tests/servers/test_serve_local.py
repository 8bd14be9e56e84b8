"""``serve_local``'s helpers around a real ``bentoml serve`` process started on 127.0.0.1.

Moved from the pure tier (tests/pure/test_service_local.py): each test starts ``bentoml
serve`` itself, a subprocess server, which is what this tier is for; the settings checks that
need no server stay there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.servers.test_service import onnx_answer
from tests.support.fixtures.data import PLANETS

EXTRA = sorted((PLANETS / "extra").glob("*.jpg"))


def test_serve_and_classify_starts_classifies_and_stops(packaged_bento: dict[str, Any]) -> None:
    import os
    import socket

    from planets_mlops.app.dev.net import free_port
    from planets_mlops.app.dev.serve_local import process_tree, serve_and_classify

    def servers() -> set[int]:
        return {
            pid
            for pid in process_tree(os.getpid())
            if pid != os.getpid() and "bentoml" in Path(f"/proc/{pid}/cmdline").read_text(errors="ignore")
        }

    before = servers()
    port = free_port()
    results = serve_and_classify(packaged_bento["archive"], EXTRA[:3], port)
    assert [r["file"] for r in results] == [str(p) for p in EXTRA[:3]]
    for result, path in zip(results, EXTRA[:3]):
        assert result["closest_class"] == onnx_answer(packaged_bento["model_dir"], path.read_bytes())[0]
    # Stopped: no new server process is left and the port is free again.
    assert servers() <= before
    with socket.socket() as sock:
        # SO_REUSEADDR: closed connections may linger in TIME_WAIT; a live listener would
        # still make bind fail.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))


def test_bentoml_serve_itself_names_a_bad_serving_variable(
    tmp_path: Path, packaged_bento: dict[str, Any]
) -> None:
    """``bentoml serve`` started directly: its output names the variable, not a lost module."""
    import subprocess
    import sys

    from planets_mlops.app.dev.net import free_port
    from planets_mlops.app.dev.serve_local import import_bento, server_env

    home = tmp_path / "bentoml"
    tag = import_bento(packaged_bento["archive"], home)
    done = subprocess.run(
        [sys.executable, "-m", "bentoml", "serve", tag, "--host", "127.0.0.1", "--port", str(free_port())],
        env=server_env(home, {"PLANETS_WORKERS": "two"}),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode != 0
    assert "Invalid PLANETS_WORKERS='two'" in done.stdout + done.stderr, done.stderr[-2000:]
