"""Run pipelines in the project's images: ``kfp.local.DockerRunner`` on Podman or Docker.

Each task runs in the image its component names in the compiled IR, with the same command
and arguments as on a cluster; only the pipeline root is shared with the host (mounted at
the same path). Everything else a task reads (the git data repository, the DVC remote,
Label Studio, GCS) must be reachable over the network, as on a cluster: the containers use
the host's network, so servers on 127.0.0.1 answer.

Podman serves a Docker-compatible API (``podman system service``); :func:`podman_service`
starts one on a private socket and points ``DOCKER_HOST`` at it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# Environment the components may need inside a container, copied from the caller's when set.
PASSED_ENV = (
    "LABEL_STUDIO_URL",
    "LABEL_STUDIO_API_KEY",
    "STORAGE_EMULATOR_HOST",
    "GOOGLE_CLOUD_PROJECT",
    "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT",
    "NO_GCE_CHECK",
    "GCE_METADATA_HOST",
    "GCE_METADATA_IP",
    "NO_PROXY",
    "no_proxy",
    "DVC_NO_ANALYTICS",
    "TF_CPP_MIN_LOG_LEVEL",
    "PLANETS_FETCH_MAX_BYTES",
    "PLANETS_FETCH_DEADLINE_S",
    "PLANETS_FETCH_MAX_REDIRECTS",
    "PLANETS_FETCH_ALLOW_HOSTS",
)


def container_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment given to every task container: :data:`PASSED_ENV` + ``extra``."""
    env = {name: os.environ[name] for name in PASSED_ENV if name in os.environ}
    env.update(extra or {})
    return env


# When a list, run_container appends each task container's phases to it, in seconds:
# ``lookup`` (is the image here), ``start`` (create + start), ``run`` (until it exits),
# ``logs``, ``remove``; benchmarks/bench_containers.py reads them.
PHASES: list[dict[str, Any]] | None = None


def run_container(client: Any, image: str, command: list[str], volumes: dict, **run_args: Any) -> int:
    """Run one task container to the end and return its exit status; then remove it.

    Replaces ``kfp.local.docker_task_handler.run_docker_container`` (kfp 2.17), which starts
    containers with ``auto_remove=True`` and expects Docker's 404 when it inspects one that
    is already gone. Podman 4.3 answers that inspect with HTTP 500 ("no such container"),
    so every fast task fails with an APIError. Waiting, reading the logs and removing the
    container afterwards works on both engines and keeps the exit status (the task's
    output appears when it ends rather than while it runs).
    """
    import docker  # type: ignore[import-untyped]  # no type information (docker 7.1)
    from kfp.local import docker_task_handler

    phases: dict[str, Any] = {"image": image}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        phases[name] = now - clock
        clock = now

    image = docker_task_handler.add_latest_tag_if_not_present(image)
    # One inspect of this image (~0.05 s), not kfp's listing of every image in the store
    # with its attributes (1.0-2.0 s per task with 16 images here).
    try:
        client.images.get(image)
        print(f"Found image {image!r}\n")
    except docker.errors.ImageNotFound:
        print(f"Pulling image {image!r}")
        client.images.pull(image)
    lap("lookup")
    run_args.pop("auto_remove", None)
    container = client.containers.run(
        image=image, command=command, detach=True, stdout=True, stderr=True, volumes=volumes, **run_args
    )
    lap("start")
    try:
        # Wait first, then read the logs: a followed log stream from Podman 4.3 does not
        # always end when its container exits, which would hang the run.
        status = wait_for_exit(client, container.id)
        lap("run")
        print(container.logs(stdout=True, stderr=True).decode(errors="replace"), end="")
        lap("logs")
        return status
    finally:
        with contextlib.suppress(Exception):
            container.remove(force=True)
        lap("remove")
        if PHASES is not None:
            PHASES.append(phases)


# States after which a container's process runs no more (Docker's and Podman's names).
_ENDED = frozenset({"exited", "dead", "stopped"})


def wait_for_exit(client: Any, container_id: str, first: float = 0.01, most: float = 0.1) -> int:
    """The exit status of a started container, as soon as its process has ended.

    Asks the engine for the container's state, first after ``first`` seconds, then 1.5
    times longer each time up to ``most`` (an ask costs Podman 2-3 ms of CPU). Not the
    engine's own ``wait``: Podman 4.3 answers it only after ``podman container cleanup``,
    a new Podman process that conmon starts when the container exits, is done, 0.15-1.3 s
    after the exit here (median 0.3 s per task container); its state says "exited"
    within 20 ms, and the removal that follows cleans up in 0.04-0.09 s.
    """
    delay = first
    while True:
        state = client.api.inspect_container(container_id)["State"]
        if str(state.get("Status", "")).lower() in _ENDED:
            return int(state["ExitCode"])
        time.sleep(delay)
        delay = min(delay * 1.5, most)


# Engine answers that do not change while a process runs, by DOCKER_HOST: the API version
# (``docker.from_env()`` asks it for every new client) and ``info()``. kfp 2.17 makes a new
# client and asks ``info()`` (only to see whether SELinux is on) before every task; Podman
# takes 0.35-0.8 s for each answer, so together they cost 1.2 s per task here.
_ENGINE_ANSWERS: dict[tuple[str, str], Any] = {}


def _engine_answer(what: str, ask: Any) -> Any:
    key = (os.environ.get("DOCKER_HOST", ""), what)
    if key not in _ENGINE_ANSWERS:
        _ENGINE_ANSWERS[key] = ask()
    return _ENGINE_ANSWERS[key]


class _InfoOnce:
    """A Docker client whose ``info()`` is asked once per engine and process."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def info(self) -> Any:
        return _engine_answer("info", self._client.info)


def _api_version() -> str:
    import docker

    client = docker.from_env()
    try:
        return str(client.api.api_version)
    finally:
        client.close()


def _engine_client() -> Any:
    """A Docker client of ``$DOCKER_HOST`` that does not ask the engine its API version again."""
    import docker

    return docker.from_env(version=_engine_answer("version", _api_version))


def run_task(handler: Any) -> Any:
    """``kfp.local.docker_task_handler.DockerTaskHandler.run`` without its per-task engine queries.

    What kfp 2.17's does (a client, the pipeline root's volume, the task's environment, then
    :func:`run_container`), with the engine's API version and ``info()`` asked once per
    process (:data:`_ENGINE_ANSWERS`). A command that pip-installs goes to kfp's own, which
    serialises those installs.
    """
    from kfp.local import docker_task_handler, status

    if "pip install" in " ".join(handler.full_command or []):
        return _KFP_RUN[0](handler)
    client = _engine_client()
    try:
        volumes = handler.get_volumes_to_mount(_InfoOnce(client))
        run_args = dict(handler.runner.container_run_args)
        if handler.env_vars:
            run_args["environment"] = handler.env_vars
        code = docker_task_handler.run_docker_container(
            client=client, image=handler.image, command=handler.full_command, volumes=volumes, **run_args
        )
    finally:
        client.close()
    return status.Status.SUCCESS if code == 0 else status.Status.FAILURE


# kfp's own DockerTaskHandler.run, kept when docker_runner() installs run_task.
_KFP_RUN: list[Any] = []


def docker_runner(
    env: Mapping[str, str] | None = None, user: str | None = None, cgroup_parent: str | None = None
) -> Any:
    """A ``kfp.local.DockerRunner`` on the host network with :func:`container_env`.

    Installs :func:`run_task` and :func:`run_container` into kfp (once per process).

    Args:
        env: extra environment for every task.
        user: ``uid:gid`` to run as; default: the image's own (non-root) user.
        cgroup_parent: the CPU cgroup every task container runs under (``podman run
            --cgroup-parent``); default: Podman's own.
    """
    from kfp import local
    from kfp.local import docker_task_handler

    docker_task_handler.run_docker_container = run_container
    handler = docker_task_handler.DockerTaskHandler
    if handler.run is not run_task:
        _KFP_RUN[:] = [handler.run]
        handler.run = run_task  # type: ignore[method-assign]
    args: dict[str, Any] = {"network_mode": "host", "environment": container_env(env)}
    if user:
        args["user"] = user
    if cgroup_parent:
        args["cgroup_parent"] = cgroup_parent
    return local.DockerRunner(**args)


def training_component(pipeline: Any) -> str | None:
    """The name of the component of ``pipeline``'s top-level training step; None: it has none."""
    spec = getattr(pipeline, "pipeline_spec", None)
    if spec is None:
        return None
    for task in spec.root.dag.tasks.values():
        if task.component_ref.name.startswith("comp-train-model"):
            return str(task.component_ref.name)
    return None


def training_image(pipeline: Any) -> str | None:
    """The image of ``pipeline``'s top-level training step, from its compiled spec; None: none."""
    from google.protobuf import json_format

    component = training_component(pipeline)
    if component is None:
        return None
    spec = pipeline.pipeline_spec
    label = spec.components[component].executor_label
    executors = json_format.MessageToDict(spec.deployment_spec).get("executors", {})
    return executors.get(label, {}).get("container", {}).get("image")


@contextlib.contextmanager
def warm_training_container(runner: Any, pipeline: Any, pipeline_root: Path) -> Iterator[Path | None]:
    """:func:`planets_mlops.warm_trainer.warm_trainer` for a run in the images (``DockerRunner``).

    A container of the training step's image, with the runner's settings and the pipeline
    root mounted as the task containers have it, runs ``python -m planets_mlops.train
    --warm-at SOCKET`` with the socket in a new folder of the pipeline root: it imports
    TensorFlow while pull and prepare run, and the training task's container, given
    ``$PLANETS_WARM_TRAINER``, hands it its job and its output. On exit the container is
    removed (it has trained and ended, or no job came) and the variable taken back from
    the runner. Yields the socket's path; None, and nothing started, where the pipeline has
    no top-level training step or the container cannot be started (a warning says why).
    """
    import uuid

    import docker
    from kfp.local import docker_task_handler

    from planets_mlops.warm_trainer import ENV

    image = training_image(pipeline)
    if image is None:
        yield None
        return
    root = Path(pipeline_root).resolve()
    folder = root / f".warm-trainer-{uuid.uuid4().hex[:12]}"
    folder.mkdir(parents=True)
    folder.chmod(0o777)  # the images' user binds the socket here
    path = folder / "socket"
    run_args = dict(runner.container_run_args)
    run_args.pop("auto_remove", None)
    environment = run_args.setdefault("environment", {})
    client = _engine_client()
    try:
        container = client.containers.run(
            image=docker_task_handler.add_latest_tag_if_not_present(image),
            command=["python", "-m", "planets_mlops.train", "--warm-at", str(path)],
            detach=True,
            volumes={str(root): {"bind": str(root), "mode": "rw"}},
            **run_args,
        )
    except docker.errors.DockerException as exc:
        log.warning("No warm training container (%s): the training step starts its own child.", exc)
        client.close()
        shutil.rmtree(folder, ignore_errors=True)
        yield None
        return
    previous = environment.get(ENV)
    environment[ENV] = str(path)
    runner.container_run_args["environment"] = environment
    try:
        yield path
    finally:
        if previous is None:
            environment.pop(ENV, None)
        else:
            environment[ENV] = previous
        with contextlib.suppress(Exception):
            container.remove(force=True)
        client.close()
        shutil.rmtree(folder, ignore_errors=True)


def shared_pipeline_root(parent: Path | None = None) -> Path:
    """A new pipeline root that the images' non-root user can write to (mode 0777).

    Under ``parent`` (which the caller makes traversable) or a fresh folder in the system
    temporary directory; the containers mount it at the same path.
    """
    root = Path(tempfile.mkdtemp(prefix="planets-kfp-", dir=parent))
    root.chmod(0o777)
    return root


@contextlib.contextmanager
def podman_service(socket_dir: Path | None = None, ready_timeout: float = 30.0) -> Iterator[str]:
    """``podman system service`` on a private unix socket; yields its ``DOCKER_HOST`` URL.

    ``DOCKER_HOST`` points at it while the block runs (the Docker SDK and DockerRunner read it).
    """
    podman = shutil.which("podman")
    if podman is None:
        raise RuntimeError("podman is not installed: run scripts/setup_podman.sh (make containers-setup)")
    own_dir = socket_dir is None
    folder = Path(tempfile.mkdtemp(prefix="podman-api-")) if socket_dir is None else Path(socket_dir)
    socket = folder / "podman.sock"
    url = f"unix://{socket}"
    process = subprocess.Popen(
        [podman, "system", "service", "--time=0", url],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    previous = os.environ.get("DOCKER_HOST")
    try:
        deadline = time.monotonic() + ready_timeout
        while not socket.exists():
            if process.poll() is not None:
                err = process.stderr.read().decode(errors="replace") if process.stderr else ""
                raise RuntimeError(f"podman system service exited with {process.returncode}: {err}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"podman system service: no socket at {socket} after {ready_timeout} s")
            time.sleep(0.05)
        os.environ["DOCKER_HOST"] = url
        yield url
    finally:
        if previous is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = previous
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        if process.stderr:
            process.stderr.close()
        if own_dir:
            shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def serve_container(
    image: str,
    bento_uri: str,
    bento_tag: str = "",
    port: int | None = None,
    *,
    env: Mapping[str, str] | None = None,
    ready_timeout: float = 120.0,
    podman_args: Sequence[str] = (),
) -> Iterator[Any]:
    """Run the serving image as a pod would, until the block ends.

    The container runs as the image's non-root user with a read-only root filesystem,
    ``/tmp`` and ``$BENTOML_HOME`` on tmpfs (the pod's emptyDir volumes), fetches its bento
    from ``bento_uri`` and serves on 127.0.0.1:``port`` (host network, so an emulator on
    127.0.0.1 is reachable as on a cluster's network).

    ``podman_args`` go to ``podman run`` before the image (e.g. a benchmark's
    ``--cgroup-parent``).

    Yields:
        A :class:`planets_mlops.app.dev.serve_local.LocalServer`; ``ready_s`` is the time from
        ``podman run`` to ``/readyz`` = 200, ``container`` its name.
    """
    from planets_mlops.app.dev.net import free_port
    from planets_mlops.app.dev.serve_local import LocalServer, wait_ready

    port = port or free_port()
    name = f"planets-serving-{port}-{os.getpid()}"
    environment = {**container_env(env), "BENTO_URI": bento_uri, "BENTO_PORT": str(port)}
    if bento_tag:
        environment["BENTO_TAG"] = bento_tag
    command = ["podman", "run", "--rm", "--name", name, "--network", "host", "--read-only"]
    # emptyDir volumes are writable by the pod's user; a Podman tmpfs is root-owned 0755
    # (its mode option is ignored here), so it is chowned to the container's user (U).
    for path in ("/tmp", "/var/lib/bentoml"):
        command += ["--tmpfs", f"{path}:rw,size=512m,U"]
    for key, value in sorted(environment.items()):
        command += ["-e", f"{key}={value}"]
    command += [*podman_args, image]
    with tempfile.TemporaryDirectory(prefix="serve-container-") as tmp:
        log_path = Path(tmp) / "server.log"
        with log_path.open("wb") as log_file:
            started = time.monotonic()
            process = subprocess.Popen(
                command, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
            )
        server = LocalServer(
            url=f"http://127.0.0.1:{port}",
            tag=bento_tag,
            process=process,
            log_path=log_path,
            started_at=started,
        )
        server.container = name  # type: ignore[attr-defined]
        try:
            wait_ready(server, ready_timeout)
            yield server
        finally:
            subprocess.run(["podman", "stop", "-t", "10", name], capture_output=True, timeout=60)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
            subprocess.run(["podman", "rm", "-f", "--ignore", name], capture_output=True, timeout=60)


def container_peak_memory(name: str) -> int | None:
    """Peak memory (bytes) of a running container from its cgroup, or None if unreadable."""
    result = subprocess.run(
        ["podman", "inspect", "--format", "{{.Id}}", name], capture_output=True, text=True, timeout=30
    )
    cid = result.stdout.strip()
    for path in (
        Path(f"/sys/fs/cgroup/memory/libpod_parent/libpod-{cid}/memory.max_usage_in_bytes"),
        Path(f"/sys/fs/cgroup/libpod_parent/libpod-{cid}/memory.peak"),
    ):
        with contextlib.suppress(OSError, ValueError):
            return int(path.read_text())
    return None


@contextlib.contextmanager
def git_daemon(base_path: Path, ready_timeout: float = 10.0) -> Iterator[str]:
    """``git daemon`` serving the repositories under ``base_path`` (push allowed) on 127.0.0.1.

    Yields the URL prefix, ``git://127.0.0.1:PORT``: a repository at ``base_path/repo`` is
    ``git://127.0.0.1:PORT/repo``. For tests and benchmarks, where containers must reach
    the data repository over the network as a cluster would.
    """
    import socket as socket_module

    from planets_mlops.app.dev.net import free_port

    port = free_port()
    process = subprocess.Popen(
        ["git", "daemon", "--reuseaddr", "--listen=127.0.0.1", f"--port={port}", f"--base-path={base_path}",
         "--export-all", "--enable=receive-pack", "--informative-errors", str(base_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"git daemon exited with {process.returncode}")
            with socket_module.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"git daemon not listening on 127.0.0.1:{port} after {ready_timeout} s")
            time.sleep(0.05)
        yield f"git://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
