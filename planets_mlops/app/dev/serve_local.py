"""Serve a ``.bento`` archive on this machine with the real ``bentoml serve``, then classify.

Used by the quickstart (:func:`serve_and_classify`), the test fixtures and the serving
benchmark. The archive is imported into a private ``BENTOML_HOME``; the server runs in its
own process group on 127.0.0.1 and is stopped with SIGTERM to the whole group, so its
supervisor and workers all go.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from planets_mlops.app.dev.net import free_port, stop_process_group
from planets_mlops.errors import DataError, PlanetsError

log = logging.getLogger(__name__)


class ServeError(PlanetsError):
    """The local BentoML server did not start, or stopped, or answered an error."""


@dataclass
class LocalServer:
    """Handle on a running ``bentoml serve``."""

    url: str
    tag: str
    process: subprocess.Popen[bytes]
    log_path: Path
    started_at: float
    ready_s: float = 0.0

    def log_tail(self, chars: int = 4000) -> str:
        """The last ``chars`` characters of the server's log, for error messages.

        Args:
            chars: How many characters to return at most.

        Returns:
            The tail of the log, or ``""`` when the log cannot be read.
        """
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def bento_tag_of(archive: Path) -> str:
    """Read ``name:version`` from the ``bento.yaml`` inside an exported archive.

    Args:
        archive: A ``.bento`` file written by ``bentoml export``.

    Returns:
        The bento's tag, ``name:version``.

    Raises:
        DataError: not a readable bento archive.
    """
    import yaml

    try:
        with tarfile.open(archive) as tar:
            member = tar.extractfile("./bento.yaml") or tar.extractfile("bento.yaml")
            info = yaml.safe_load(member.read()) if member else None
    except (tarfile.TarError, KeyError, OSError) as exc:
        raise DataError(
            f"{str(archive)!r} is not a bento archive ({exc}). Pass the file package_model exported."
        ) from exc
    if not info or "name" not in info or "version" not in info:
        raise DataError(f"{str(archive)!r} has no bento.yaml with name and version.")
    return f"{info['name']}:{info['version']}"


def _bentoml_command() -> list[str]:
    return [sys.executable, "-m", "bentoml"]


def server_env(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment of the server: private home, no telemetry, no proxy for 127.0.0.1.

    Args:
        home: ``BENTOML_HOME`` of the server.
        extra: More variables, which win over the current environment.

    Returns:
        The current environment with those settings.
    """
    env = {
        **os.environ,
        "BENTOML_HOME": str(home),
        "BENTOML_DO_NOT_TRACK": "true",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
    env.update(extra or {})
    return env


def import_bento(archive: Path, home: Path) -> str:
    """Import the archive into ``home`` as ``bentoml import`` does; return its tag (skip if present).

    Args:
        archive: A ``.bento`` file.
        home: ``BENTOML_HOME`` to import into.

    Returns:
        The bento's tag, ``name:version``.

    Raises:
        DataError: ``archive`` is not a bento archive.
        ServeError: the import failed.
    """
    archive = Path(archive).resolve()
    tag = bento_tag_of(archive)
    from planets_mlops.errors import InvalidParameterError
    from planets_mlops.serving_entrypoint import import_archive, is_imported

    if is_imported(tag, {"BENTOML_HOME": str(home)}):
        return tag

    try:
        import_archive(archive, home)  # as the serving image does: no bentoml CLI process
    except InvalidParameterError as exc:
        raise ServeError(f"Importing {archive} failed: {exc}") from exc
    return tag


def check_settings(env: Mapping[str, str]) -> None:
    """Validate the serving variables of ``env`` before ``bentoml serve`` is started.

    BentoML reports an error raised while it imports the service as an unrelated
    "No module named ..."; checking here names the variable instead.

    Raises:
        InvalidParameterError: a ``PLANETS_*`` serving variable is invalid.
    """
    from planets_mlops.service.settings import ServingSettings

    ServingSettings.from_env(env)
    for hint in ServingSettings.unknown_variables(env):
        log.warning("Not a serving setting, ignored: %s", hint)


def _get(url: str, timeout: float = 1.0) -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants (Linux ``/proc``).

    BentoML's supervisor starts each worker in a session of its own, so the process group
    of ``bentoml serve`` does not contain the workers; the parent links do.

    Args:
        root: Process id at the top of the tree.

    Returns:
        ``root`` first, then every descendant that is still running.
    """
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                parent = int(stat[stat.rindex(")") + 2 :].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(parent, []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def stop_server(server: LocalServer, timeout: float = 15.0) -> None:
    """SIGTERM the server's process group; SIGKILL the whole tree if it lingers.

    The supervisor stops its workers on SIGTERM; the worker ids are collected first so
    that none is left running if the supervisor has to be killed.

    Args:
        server: The server to stop; nothing happens if it has already exited.
        timeout: Seconds to wait after SIGTERM before killing.
    """
    process = server.process
    if process.poll() is not None:
        return
    workers = [pid for pid in process_tree(process.pid) if pid != process.pid]
    stop_process_group(process, timeout)
    for pid in workers:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def serve_bento(
    archive: Path,
    port: int | None = None,
    *,
    env: Mapping[str, str] | None = None,
    home: Path | None = None,
    ready_timeout: float = 90.0,
    extra_args: Sequence[str] = (),
) -> Iterator[LocalServer]:
    """Import ``archive`` and run ``bentoml serve`` on 127.0.0.1 until the block ends.

    Args:
        archive: ``.bento`` file exported by :func:`planets_mlops.package.package_model`.
        port: Port to bind; default a free one.
        env: Extra environment for the server (``PLANETS_WORKERS``, ...).
        home: BentoML home to import into; default a temporary folder.
        ready_timeout: Seconds to wait for ``/readyz`` to answer 200.
        extra_args: More ``bentoml serve`` arguments.

    Yields:
        The running server; ``ready_s`` is the time from start to ``/readyz`` = 200.

    Raises:
        InvalidParameterError: a ``PLANETS_*`` serving variable of the environment is invalid
            (checked before the server starts; the message names it).
        ServeError: the server exited or was not ready in time (its log is in the message).
    """
    check_settings(server_env(Path("."), env))
    chosen = port is None
    for attempt in range(1, PORT_ATTEMPTS + 1):
        stack = contextlib.ExitStack()
        try:
            server = stack.enter_context(
                _serve_bento_on(archive, port or free_port(), env, home, ready_timeout, extra_args)
            )
        except PortTakenError:
            # free_port() closes its socket before bentoml serve binds the port, and another
            # socket may take it meanwhile: bentoml serve's own circus endpoints pick free
            # ports too (a readiness poll once got ZeroMQ's greeting, 0xff..., from one).
            if not chosen or attempt == PORT_ATTEMPTS:
                raise
            log.warning("the port chosen for bentoml serve was taken before it bound it; trying another")
            continue
        with stack:
            yield server
        return


# Ports :func:`serve_bento` tries when it chooses them and one is taken before the server binds it.
PORT_ATTEMPTS = 3


class PortTakenError(ServeError):
    """``bentoml serve`` could not bind its port: another process holds it."""


@contextlib.contextmanager
def _serve_bento_on(
    archive: Path,
    port: int,
    env: Mapping[str, str] | None,
    home: Path | None,
    ready_timeout: float,
    extra_args: Sequence[str],
) -> Iterator[LocalServer]:
    with tempfile.TemporaryDirectory(prefix="serve-bento-") as tmp:
        home = Path(home).resolve() if home else Path(tmp) / "bentoml"
        tag = import_bento(Path(archive), home)
        log_path = Path(tmp) / "server.log"
        command = [*_bentoml_command(), "serve", tag, "--host", "127.0.0.1", "--port", str(port), *extra_args]
        with log_path.open("wb") as log_file:
            started = time.monotonic()
            process = subprocess.Popen(
                command,
                env=server_env(home, env),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=tmp,
            )
        server = LocalServer(
            url=f"http://127.0.0.1:{port}", tag=tag, process=process, log_path=log_path, started_at=started
        )
        try:
            wait_ready(server, ready_timeout)
            log.info("Serving %s at %s (ready in %.1f s)", tag, server.url, server.ready_s)
            yield server
        finally:
            stop_server(server)


def wait_ready(server: LocalServer, timeout: float) -> None:
    """Poll ``/readyz`` every 20 ms until it answers 200.

    Sets ``server.ready_s`` when the server is ready.

    Args:
        server: The server just started.
        timeout: Seconds from the server's start to wait.

    Raises:
        ServeError: the process exited or ``timeout`` passed.
    """
    deadline = server.started_at + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            tail = server.log_tail()
            error = PortTakenError if "address already in use" in tail.lower() else ServeError
            raise error(f"bentoml serve {server.tag} exited with {server.process.returncode}:\n{tail}")
        # Not answering yet, or something else answers on the port (not HTTP): not ready.
        with contextlib.suppress(OSError, http.client.HTTPException):
            if _get(f"{server.url}/readyz", timeout=1.0) == 200:
                server.ready_s = time.monotonic() - server.started_at
                return
        time.sleep(0.02)
    raise ServeError(f"bentoml serve {server.tag} not ready after {timeout:.0f} s:\n{server.log_tail()}")


def classify_files(url: str, images: Sequence[Path], timeout: float = 30.0) -> list[dict[str, Any]]:
    """POST each image to ``{url}/predict``; return the JSON answers in order.

    Args:
        url: Base URL of the server, e.g. ``http://127.0.0.1:3000``.
        images: Image files, each sent as field ``image``.
        timeout: Seconds per request.

    Returns:
        ``{"file": path, "prediction": ..., "probabilities": {...}}`` per image.

    Raises:
        ServeError: an answer was not HTTP 200 (its body is in the message).
    """
    import httpx

    results = []
    with httpx.Client(base_url=url, timeout=timeout, trust_env=False) as client:
        for path in images:
            path = Path(path)
            response = client.post("/predict", files={"image": (path.name, path.read_bytes())})
            if response.status_code != 200:
                raise ServeError(
                    f"/predict answered {response.status_code} for {path}: {response.text[:500]}"
                )
            results.append({"file": str(path), **response.json()})
    return results


def serve_and_classify(bento_archive: Path, images: list[Path], port: int) -> list[dict[str, Any]]:
    """Start the bento on 127.0.0.1:``port``, classify ``images`` over HTTP, stop it.

    Returns:
        One ``{"file", "prediction", "probabilities"}`` per image, in order.

    Raises:
        ServeError: the server did not start or refused an image.
        DataError: ``bento_archive`` is not a bento archive.
    """
    with serve_bento(Path(bento_archive), port) as server:
        return classify_files(server.url, images)
