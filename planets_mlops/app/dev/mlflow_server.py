"""A local ``mlflow server`` on 127.0.0.1: SQLite in a work folder, artifacts proxied.

Used by the quickstart and the tests. Artifacts go to ``artifacts_destination`` through
the server (``--serve-artifacts``), so clients need no bucket credentials: a folder by
default, or ``gs://BUCKET/PREFIX`` (with ``STORAGE_EMULATOR_HOST`` in ``env`` for the
emulator). The server runs in its own process group (it starts a worker and a job
runner), and :meth:`MlflowServer.stop` ends the whole group.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from planets_mlops.app.dev.net import free_port, stop_process_group
from planets_mlops.errors import TrackingError


@dataclass
class MlflowServer:
    """A running local MLflow server."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the server and every process it started."""
        stop_process_group(self.process, timeout_s)


def _mlflow_command() -> list[str]:
    found = Path(sys.executable).with_name("mlflow")
    if found.exists():
        return [str(found)]
    which = shutil.which("mlflow")
    if which:
        return [which]
    raise TrackingError(
        "No `mlflow` command in this environment: the tracking server comes with the dev extra "
        "(`make setup`), or point MLFLOW_TRACKING_URI at a running server."
    )


def start_server(
    work_dir: Path,
    artifacts_destination: str = "",
    env: dict[str, str] | None = None,
    ready_timeout_s: float = 90.0,
) -> MlflowServer:
    """Start ``mlflow server`` on a free 127.0.0.1 port and wait for ``/health``.

    Args:
        work_dir: Holds ``mlflow.db`` (SQLite), the log and, by default, the artifacts.
        artifacts_destination: Where artifacts go (``gs://...`` or a folder); default
            ``work_dir/artifacts``.
        env: Extra environment for the server (e.g. ``STORAGE_EMULATOR_HOST``).
        ready_timeout_s: How long to wait for the first answer.

    Raises:
        TrackingError: the server exited or did not answer in time (its log's tail is quoted).
    """
    work_dir = Path(work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    destination = artifacts_destination or str(work_dir / "artifacts")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = work_dir / "mlflow-server.log"
    command = [
        *_mlflow_command(),
        "server",
        "--host", "127.0.0.1",
        "--port", str(port),
        "--workers", "1",
        "--backend-store-uri", f"sqlite:///{work_dir / 'mlflow.db'}",
        "--serve-artifacts",
        "--artifacts-destination", destination,
    ]  # fmt: skip
    server_env = {
        **os.environ,
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        **(env or {}),
    }
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=server_env,
            cwd=work_dir,
            start_new_session=True,
        )
    server = MlflowServer(url=url, process=process, log_path=log_path)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + ready_timeout_s
    while True:
        if process.poll() is not None:
            raise TrackingError(f"mlflow server exited with {process.returncode}: {_tail(log_path)}")
        try:
            with opener.open(f"{url}/health", timeout=1) as response:
                if response.status == 200:
                    return server
        except OSError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise TrackingError(
                f"mlflow server not ready on {url} after {ready_timeout_s:g} s: {_tail(log_path)}"
            )
        time.sleep(0.2)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
