"""Start and stop a local, headless Label Studio server (tests and the quickstart demo).

The server runs from its own venv (``.venv-labelstudio``, made by
``scripts/setup_label_studio.sh``) because its pins conflict with the project's.

A fresh data directory costs about a minute of database migrations, so the first start
builds a migrated *template* with ``label-studio init`` under ``.work/`` and every later
start copies it (``cp -a`` semantics) and answers in 10-15 s. The template fixes the
admin user, a legacy API token and the Django ``SECRET_KEY``: all three must be set when
the organisation is created, and a server started on a copy keeps accepting that token.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from planets_mlops.app.dev.net import free_port
from planets_mlops.errors import LabelStudioError

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[3]
SETUP_COMMAND = "scripts/setup_label_studio.sh (or `make setup`)"
TEMPLATE_VERSION = "1"
# Variables Label Studio also reads under bare names; a stray DEBUG=maybe crashes it.
_STRIPPED_ENV = (
    "USERNAME",
    "PASSWORD",
    "PORT",
    "HOST",
    "DEBUG",
    "LOG_LEVEL",
    "DATABASE_NAME",
    "LABEL_STUDIO_API_KEY",
    "LABEL_STUDIO_URL",
)


@dataclass
class LabelStudioServer:
    """A running server: where it answers and the token to use."""

    url: str
    api_key: str
    username: str
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes]

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL if it does not exit in ``timeout`` seconds."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


def server_venv() -> Path:
    """The server venv: ``$LABEL_STUDIO_VENV`` or ``<repo>/.venv-labelstudio``."""
    return Path(os.environ.get("LABEL_STUDIO_VENV") or REPO_ROOT / ".venv-labelstudio")


def label_studio_executable(venv: Path | None = None) -> Path:
    """Path of the ``label-studio`` command in the server venv.

    Raises:
        LabelStudioError: the venv or the command is missing; names the set-up command.
    """
    venv = Path(venv or server_venv())
    exe = venv / "bin" / "label-studio"
    if not exe.exists():
        raise LabelStudioError(
            f"Label Studio server venv not found: {exe} does not exist. Create it with "
            f"{SETUP_COMMAND}; it installs label-studio from scripts/label-studio-requirements.lock "
            "into .venv-labelstudio (set LABEL_STUDIO_VENV to use another folder)."
        )
    return exe


def _child_env(data_dir: Path, creds: dict[str, str], local_files_root: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _STRIPPED_ENV}
    env.update(
        {
            "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
            "SECRET_KEY": creds["secret_key"],
            "LABEL_STUDIO_USERNAME": creds["username"],
            "LABEL_STUDIO_PASSWORD": creds["password"],
            "LABEL_STUDIO_USER_TOKEN": creds["token"],
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
            "LATEST_VERSION_CHECK": "false",
            "COLLECT_ANALYTICS": "false",
            "SENTRY_DSN": "",
            "FRONTEND_SENTRY_DSN": "",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
    )
    if local_files_root is not None:
        env["LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED"] = "true"
        env["LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT"] = str(Path(local_files_root).resolve())
    return env


def _new_credentials() -> dict[str, str]:
    return {
        "username": "admin@planets.local",
        "password": secrets.token_urlsafe(16),
        "token": secrets.token_hex(20),
        "secret_key": secrets.token_hex(32),
    }


def init_command(exe: Path, project: Path, creds: dict[str, str]) -> list[str]:
    """The ``label-studio init`` command line that creates the admin user and its token.

    Each value is in its option's argument (``--password=...``): a random password may
    begin with ``-``, which argparse takes for an option when it comes on its own (one
    start in 64 failed so).
    """
    return [
        str(exe),
        "init",
        str(project),
        "-q",
        "--no-browser",
        f"--username={creds['username']}",
        f"--password={creds['password']}",
        f"--user-token={creds['token']}",
        "--enable-legacy-api-token",
    ]


def build_template(template_dir: Path, venv: Path | None = None, timeout: float = 600.0) -> Path:
    """Make (once) a migrated data directory with an admin user and a legacy token.

    Safe against concurrent test sessions: a file lock serialises builders and the
    finished template appears by an atomic rename.
    """
    exe = label_studio_executable(venv)
    template_dir = Path(template_dir)
    marker = template_dir / "credentials.json"
    template_dir.parent.mkdir(parents=True, exist_ok=True)
    lock_path = template_dir.with_name(template_dir.name + ".lock")
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists() and json.loads(marker.read_text()).get("version") == TEMPLATE_VERSION:
            return template_dir
        started = time.monotonic()
        work = Path(tempfile.mkdtemp(prefix=template_dir.name + ".", dir=template_dir.parent))
        creds = _new_credentials()
        data_dir = work / "data"
        data_dir.mkdir()
        log_path = work / "init.log"
        with open(log_path, "wb") as out:
            result = subprocess.run(
                init_command(exe, work / "project", creds),
                env=_child_env(data_dir, creds, None),
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                cwd=work,
                check=False,
            )
        if result.returncode != 0:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise LabelStudioError(
                f"`label-studio init` failed (exit {result.returncode}); log {log_path}:\n{tail}"
            )
        (work / "credentials.json").write_text(json.dumps({**creds, "version": TEMPLATE_VERSION}))
        if template_dir.exists():
            shutil.rmtree(template_dir)
        os.replace(work, template_dir)
        log.info("Built Label Studio template %s in %.1f s", template_dir, time.monotonic() - started)
    return template_dir


def _http_ok(url: str, timeout: float = 2.0) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            return bool(response.status == 200 and b"UP" in response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return False


def start_server(
    data_dir: Path | None = None,
    port: int | None = None,
    venv: Path | None = None,
    template_dir: Path | None = None,
    local_files_root: Path | None = None,
    ready_timeout: float = 240.0,
) -> LabelStudioServer:
    """Start Label Studio on 127.0.0.1 from a copy of the template; wait for ``/health``.

    Args:
        data_dir: fresh folder for this server's database and uploads (a temp dir if None).
        port: port to ask for (a free one if None); the server may take the next one if
            busy, so the address is read from its log.
        venv: server venv (default :func:`server_venv`).
        template_dir: migrated template (default ``<repo>/.work/labelstudio-template``).
        local_files_root: serve ``/data/local-files/?d=<path under this folder>``.
        ready_timeout: seconds to wait for the first healthy answer.

    Raises:
        LabelStudioError: venv missing, the server exits early or never gets healthy.
    """
    exe = label_studio_executable(venv)
    template = build_template(Path(template_dir or REPO_ROOT / ".work" / "labelstudio-template"), venv)
    creds = json.loads((template / "credentials.json").read_text())
    data_dir = Path(data_dir or tempfile.mkdtemp(prefix="labelstudio-"))
    if data_dir.exists():
        shutil.rmtree(data_dir)
    shutil.copytree(template / "data", data_dir, symlinks=True)
    port = port or free_port()
    log_path = data_dir / "server.log"
    started = time.monotonic()
    with open(log_path, "wb") as out:
        process = subprocess.Popen(
            [str(exe), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port)],
            env=_child_env(data_dir, creds, local_files_root),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=data_dir,
            start_new_session=True,
        )
    server = LabelStudioServer(
        f"http://127.0.0.1:{port}", creds["token"], creds["username"], data_dir, log_path, process
    )
    address = re.compile(rb"Starting development server at (http://127\.0\.0\.1:\d+)/")
    while time.monotonic() - started < ready_timeout:
        if process.poll() is not None:
            raise LabelStudioError(
                f"Label Studio exited with code {process.returncode} before answering; "
                f"log {log_path}:\n{log_path.read_text(errors='replace')[-2000:]}"
            )
        match = address.search(log_path.read_bytes())
        if match:
            server.url = match.group(1).decode()
        if _http_ok(server.url + "/health"):
            log.info(
                "Label Studio up at %s in %.1f s (data %s)", server.url, time.monotonic() - started, data_dir
            )
            return server
        time.sleep(0.5)
    server.stop()
    raise LabelStudioError(
        f"Label Studio did not answer {server.url}/health within {ready_timeout:.0f} s; "
        f"log {log_path}:\n{log_path.read_text(errors='replace')[-2000:]}"
    )


@contextlib.contextmanager
def starting_server(**kwargs: object) -> Iterator[Callable[[], LabelStudioServer]]:
    """:func:`start_server` in a background thread, from entry on.

    Its start (a database migration the first time: tens of seconds) overlaps the caller's
    other work. Yields a function that waits for the server and returns it (raising what the
    start raised); the server is stopped on exit, used or not.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="label-studio-start") as pool:
        future = pool.submit(start_server, **kwargs)  # type: ignore[arg-type]
        try:
            yield future.result
        finally:
            if future.exception() is None:  # a failed start was raised to whoever waited for it
                future.result().stop()


@contextlib.contextmanager
def running_server(**kwargs: object) -> Iterator[LabelStudioServer]:
    """:func:`start_server` as a context manager that always stops the server."""
    server = start_server(**kwargs)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.stop()
