"""A training child started before its task, so that TensorFlow is imported while the steps before it run.

Under ``kfp.local``'s subprocess runner the training task starts its TensorFlow child
(:func:`planets_mlops.train.train_model_in_child`) only once pull and prepare are done, and
the child then spends 2.5 CPU s or more importing TensorFlow before the first epoch. A local run
of a pipeline that trains (:func:`planets_mlops.app.local.run_local`) starts that child at
the beginning of the run instead: the run binds a Unix socket in a private folder, and
``python -m planets_mlops.train --warm FD LOG`` inherits it, imports TensorFlow
(:func:`planets_mlops.train.import_tensorflow`) and waits for one job. The training task
finds the socket in ``$PLANETS_WARM_TRAINER``, hands it the same four arguments it would
give a new child, and its standard output and error (``SCM_RIGHTS``), so the epochs are
logged in the task's own log. The warm child runs :func:`planets_mlops.train.child_main`,
the code a new child runs, and answers with its exit status; the model folder is the same
to the bit (tests/pipeline/test_warm_trainer.py).

The warm child takes a job only from the same interpreter and checkout, and with the same
value of every environment variable that can change TensorFlow or the training (``TF_*``,
``CUDA*``, ``OMP_*``, ``PLANETS_*``...); otherwise it declines, and the task starts a new child
as before. So does a task whose socket is gone or refuses connections. A warm child serves
one job and ends; the run stops it if no job came. A local run in the images
(``DockerRunner``) starts a warm training container the same way
(:func:`planets_mlops.app.containers.warm_training_container`). On a cluster every task is a
pod of its own, and nothing here is used.

This module imports only the standard library (and :mod:`planets_mlops.quick_exit`, which is
standard library only) at the top: the training task imports it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from planets_mlops.quick_exit import flush_output

log = logging.getLogger(__name__)

ENV = "PLANETS_WARM_TRAINER"
"""The warm child's socket, for the training task (set by :func:`warm_trainer`)."""

MATCHED_ENV_PREFIXES = (
    "CUDA",
    "KMP_",
    "LD_",
    "MKL_",
    "NVIDIA",
    "OMP_",
    "PLANETS_",
    "PYTHON",
    "TF_",
    "XLA_",
)
"""Variables a job's environment must share with the warm child's, value for value."""

ANSWER_TIMEOUT_S = 300.0
"""How long a task waits for the warm child to take or decline its job (its import included)."""

IDLE_TIMEOUT_S = 6 * 3600.0
"""A warm child that no job reached in this time ends by itself (its run should stop it first)."""

_MAX_JOB_BYTES = 1 << 20
_HEADER = struct.Struct("!I")


def matched_environment() -> dict[str, str]:
    """The part of this process's environment that a job must share with the warm child."""
    return {k: v for k, v in os.environ.items() if k.startswith(MATCHED_ENV_PREFIXES) and k != ENV}


def _identity() -> dict[str, Any]:
    import planets_mlops

    return {
        "executable": os.path.realpath(sys.executable),
        "package": os.path.realpath(planets_mlops.__file__),
        "env": matched_environment(),
    }


# ---------------------------------------------------------------- the run's side


@contextlib.contextmanager
def warm_trainer(enabled: bool = True) -> Iterator[Path | None]:
    """A warm child for the duration of a local run, its socket in ``$PLANETS_WARM_TRAINER``.

    Yields the socket's path (None when ``enabled`` is false, or where Unix sockets with
    descriptor passing do not exist). On exit the child is stopped if no job reached it, or
    waited for, and the variable is restored.
    """
    if not enabled or not hasattr(socket, "send_fds"):
        yield None
        return
    folder = Path(tempfile.mkdtemp(prefix="planets-warm-trainer-"))  # mode 0700
    path = folder / "socket"
    log_path = folder / "start.log"
    # Bound and listening before any task can look: a task that comes before the child has
    # imported TensorFlow waits in the backlog.
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server, open(log_path, "wb") as start_log:
            server.bind(str(path))
            server.listen(4)
            child = subprocess.Popen(
                [sys.executable, "-m", "planets_mlops.train", "--warm", str(server.fileno()), str(log_path)],
                stdin=subprocess.DEVNULL,
                stdout=start_log,
                stderr=subprocess.STDOUT,
                pass_fds=[server.fileno()],
            )
    except OSError as exc:  # a socket path over the system's limit (a long $TMPDIR), no fork...
        log.warning("No warm training child (%s): the training step starts its own.", exc)
        shutil.rmtree(folder, ignore_errors=True)
        yield None
        return
    previous = os.environ.get(ENV)
    os.environ[ENV] = str(path)
    try:
        yield path
    finally:
        if previous is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = previous
        _stop(child)
        shutil.rmtree(folder, ignore_errors=True)


def _stop(child: subprocess.Popen) -> None:
    """End the warm child: it has served its job (and ends by itself) or none came."""
    if child.poll() is None:
        # A child that took a job ends within its task; one that did not is only waiting.
        child.send_signal(signal.SIGTERM)
    try:
        child.wait(timeout=30)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


# ---------------------------------------------------------------- the training task's side


class HandedOver:
    """A job that a warm child has been sent: :meth:`wait` gives its exit status, as ``Popen.wait``."""

    def __init__(self, connection: socket.socket, argv: list[str]) -> None:
        self._connection = connection
        self._argv = argv
        self._reader: IO[bytes] = connection.makefile("rb")
        self._fallback: subprocess.Popen | None = None

    def wait(self) -> int:
        """The training's exit status; a declined job is trained by a new child, here."""
        if self._fallback is not None:
            return self._fallback.wait()
        answer = self._answer(ANSWER_TIMEOUT_S)
        if "declined" in answer:
            log.info("The warm trainer declined the job (%s): training in a new process.", answer["declined"])
            self._close()
            self._fallback = new_child(self._argv)
            return self._fallback.wait()
        log.info(
            "Training in the warm trainer (process %s, TensorFlow imported before this task).",
            answer.get("pid"),
        )
        # The training itself may take as long as it takes; the child's end closes the socket.
        ended = self._answer(None, limit=_MAX_JOB_BYTES)
        self._close()
        if "exit" not in ended:
            log.error("The warm trainer ended without an exit status.")
            return 1
        if isinstance(ended.get("result"), str):
            Path(self._argv[3]).write_text(ended["result"])
        return int(ended["exit"])

    def _answer(self, timeout: float | None, limit: int = 4096) -> dict[str, Any]:
        self._connection.settimeout(timeout)
        try:
            line = self._reader.readline(limit)
        except TimeoutError:
            return {"declined": f"no answer in {timeout:.0f} s"}
        except OSError as exc:
            return {"declined": f"connection lost: {exc}"}
        try:
            answer = json.loads(line) if line else {}
        except ValueError:
            answer = {}
        if not isinstance(answer, dict):
            answer = {}
        return answer if answer or timeout is None else {"declined": "connection closed"}

    def _close(self) -> None:
        self._reader.close()
        self._connection.close()


def new_child(argv: list[str]) -> subprocess.Popen:
    """A new training child, ``python -m planets_mlops.train ARGV``."""
    flush_output()
    return subprocess.Popen([sys.executable, "-m", "planets_mlops.train", *argv])


def start_training(argv: list[str]) -> HandedOver | subprocess.Popen:
    """The training child for ``argv``: the warm one where it is waiting, otherwise a new one.

    Returns at once; ``.wait()`` on the result gives the exit status.
    """
    path = os.environ.get(ENV)
    if path:
        handed = _hand_over(Path(path), argv)
        if handed is not None:
            return handed
    return new_child(argv)


def _hand_over(path: Path, argv: list[str]) -> HandedOver | None:
    flush_output()
    job = json.dumps({**_identity(), "argv": argv, "cwd": os.getcwd()}).encode()
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.settimeout(10)
        connection.connect(str(path))
        # This process's own standard output and error (kfp.local reads them into the task's log).
        socket.send_fds(connection, [_HEADER.pack(len(job))], [1, 2])
        connection.sendall(job)
    except (OSError, ValueError) as exc:
        connection.close()
        log.info("No warm trainer at %s (%s): training in a new process.", path, exc)
        return None
    return HandedOver(connection, argv)


# ---------------------------------------------------------------- the warm child


def _receive(connection: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """One job and the two descriptors sent with it; closes the descriptors of a bad message."""
    data, fds, _, _ = socket.recv_fds(connection, _HEADER.size, 2)
    try:
        if len(data) != _HEADER.size or len(fds) != 2:
            raise ValueError("a job is a 4-byte length and two descriptors")
        (size,) = _HEADER.unpack(data)
        if size > _MAX_JOB_BYTES:
            raise ValueError(f"a job of {size} bytes is over {_MAX_JOB_BYTES}")
        body = b""
        while len(body) < size:
            chunk = connection.recv(size - len(body))
            if not chunk:
                raise ValueError("the job ended early")
            body += chunk
        job = json.loads(body)
        if not isinstance(job, dict) or not isinstance(job.get("argv"), list) or len(job["argv"]) != 4:
            raise ValueError("a job names four arguments")
        if not isinstance(job.get("cwd"), str):
            raise ValueError("a job names its working folder")
    except (ValueError, OSError):
        for fd in fds:
            os.close(fd)
        raise
    return job, fds


def _mismatch(job: dict[str, Any], own: dict[str, Any]) -> str | None:
    for key in ("executable", "package"):
        if job.get(key) != own[key]:
            return f"another {key}: {job.get(key)!r}, not {own[key]!r}"
    env = job.get("env")
    theirs: dict[str, Any] = env if isinstance(env, dict) else {}
    for name in sorted(set(theirs) | set(own["env"])):
        if theirs.get(name) != own["env"].get(name):
            return f"${name} differs"
    return None


def _reply(connection: socket.socket, answer: dict[str, Any]) -> None:
    connection.sendall(json.dumps(answer).encode() + b"\n")


def _take_streams(fds: list[int], start_log: Path | None) -> None:
    """Write from now on to the task's stdout and stderr; what the import printed goes there first."""
    flush_output()
    for fd, target in zip(fds, (1, 2), strict=True):
        os.dup2(fd, target)
        os.close(fd)
    if start_log is not None and start_log.is_file():
        with contextlib.suppress(OSError):
            os.write(1, start_log.read_bytes()[-65536:])


def serve_main(argv: list[str], prepare: Callable[[], None], run: Callable[[list[str]], int]) -> int:
    """``python -m planets_mlops.train --warm FD LOG`` or ``--warm-at PATH``: :func:`serve`.

    ``--warm FD LOG``: on the socket inherited as ``FD`` (a local run's subprocess runner),
    what the import printed kept in ``LOG``. ``--warm-at PATH``: on a socket it binds at
    ``PATH`` itself (a warm training container, :func:`planets_mlops.app.containers.warm_training_container`:
    the folder is bind-mounted into the task containers); what the import printed stays in
    the container's log.
    """
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))  # waiting, nothing to keep: end now
    if argv[:1] == ["--warm-at"] and len(argv) == 2:
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(argv[1])
        server.listen(4)
        return serve(server, None, prepare, run)
    _, fd, start_log = argv
    return serve(socket.socket(fileno=int(fd)), Path(start_log), prepare, run)


def serve(
    server: socket.socket,
    start_log: Path | None,
    prepare: Callable[[], None],
    run: Callable[[list[str]], int],
) -> int:
    """``prepare()``, then ``run(argv)`` for the first job on ``server`` that matches; its exit status.

    Args:
        server: a listening Unix socket.
        start_log: the file this process writes to until a job comes; its end is copied
            into the task's output first.
        prepare: the imports (:func:`planets_mlops.train.import_tensorflow`).
        run: the training child's main (:func:`planets_mlops.train.child_main`).
    """
    own = _identity()  # before TensorFlow's import, which may set variables of its own
    prepare()
    deadline = time.monotonic() + IDLE_TIMEOUT_S
    while True:
        server.settimeout(max(1.0, deadline - time.monotonic()))
        try:
            connection, _ = server.accept()
        except TimeoutError:
            log.info("No training job came in %.0f s.", IDLE_TIMEOUT_S)
            return 0
        with connection:
            connection.settimeout(10)
            try:
                job, fds = _receive(connection)
            except (ValueError, OSError) as exc:
                with contextlib.suppress(OSError):
                    _reply(connection, {"declined": f"unreadable job: {exc}"})
                continue
            reason = _mismatch(job, own)
            if reason is None:
                try:
                    os.chdir(job["cwd"])
                except OSError as exc:
                    reason = f"no working folder {job['cwd']!r}: {exc.strerror}"
            if reason is not None:
                for fd in fds:
                    os.close(fd)
                with contextlib.suppress(OSError):
                    _reply(connection, {"declined": reason})
                continue
            server.close()
            _take_streams(fds, start_log)
            _reply(connection, {"pid": os.getpid()})
            # The result file is written here and its text sent back: the task's own path
            # may be in a folder this process cannot see (another container's /tmp).
            argv = [str(a) for a in job["argv"]]
            with tempfile.TemporaryDirectory(prefix="warm-trainer-") as scratch:
                result_file = Path(scratch) / "result.json"
                try:
                    argv[3] = str(result_file)  # child_main: PREPARED_DIR MODEL_DIR PARAMS_JSON RESULT_FILE
                    code = run(argv)
                except BaseException:  # noqa: BLE001 - reported as a new child would: traceback, status 1
                    import traceback

                    traceback.print_exc()
                    code = 1
                result = result_file.read_text() if result_file.is_file() else None
            flush_output()
            with contextlib.suppress(OSError):
                _reply(connection, {"exit": code, "result": result})
            return code
