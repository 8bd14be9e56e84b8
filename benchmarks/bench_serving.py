"""Benchmark the packaged service: real model, real ``bentoml serve``, real JPEGs.

Not a test. It trains the reference model (prepare + train on data/planets/raw: lr 0.001,
conv 64, dense 128, 10 epochs) unless ``--model-dir`` is given, packages it with
``package_model``, starts ``bentoml serve`` on 127.0.0.1 and measures:

* cold start: from starting ``bentoml serve`` to the first /predict answer;
* accuracy of the served model on the 500 images of data/planets/extra;
* requests/s and p50/p95/p99 latency at 1 and 8 concurrent keep-alive clients over the
  extra JPEGs (multipart field ``image``), with the error count (any non-200);
* peak RSS of the server's whole process tree (supervisor + workers);
* with ``--monitoring``: requests/s at 8 clients with prediction records off and on
  (``PLANETS_MONITORING_URI`` a local folder), alternating servers for ``--rounds`` rounds,
  the ratio of the medians, and the records written against the requests answered;
* with ``--container``: the serving image (``make images``) run as a pod runs it (Podman,
  non-root, read-only root filesystem, ``/tmp`` and ``$BENTOML_HOME`` on tmpfs, the bento
  fetched from the GCS emulator through ``BENTO_URI``) beside the same bento under
  ``bentoml serve``, alternating for ``--rounds`` rounds: start to ``/readyz`` (the
  container's includes fetching and importing the bento; ``bentoml serve``'s is given
  without and with its ``bentoml import``), req/s at 8 clients, p50 at 1 client, and the
  ratio container / ``bentoml serve`` of each median and within each round (its two servers
  back to back, so a host that speeds up or slows down between rounds moves both).

The load generator is ``wrk`` (Debian's; ``make setup`` installs it: ``scripts/setup_debian_tools.sh``)
replaying the pre-built HTTP/1.1 requests on keep-alive sockets from one C thread
(``benchmarks/wrk_requests.lua``), or, without ``wrk`` or with ``--load-generator python``,
a plain asyncio client doing the same in this process. Each load row gives the
generator's own CPU (``generator_cpu_share``, cores): on 2 cores it competes with the
server's workers, so it is printed beside every figure.

Usage::

    .venv/bin/python -m benchmarks.bench_serving                 # train, package, measure
    .venv/bin/python -m benchmarks.bench_serving --model-dir M   # reuse a model folder
    .venv/bin/python -m benchmarks.bench_serving --workers 1 --seconds 10 --json out.json
    .venv/bin/python -m benchmarks.bench_serving --reuse --cold-starts 0 --monitoring   # records off vs on
    .venv/bin/python -m benchmarks.bench_serving --reuse --cold-starts 0 --clients --container  # image
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import logging
import os
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.fair_cpu import fair_cpu_parent
from planets_mlops.app.dev.serve_local import LocalServer, process_tree, serve_bento

REPO = Path(__file__).resolve().parents[1]
log = logging.getLogger("bench_serving")
EXTRA = REPO / "data" / "planets" / "extra"
RAW = REPO / "data" / "planets" / "raw"


def label_of(path: Path) -> str:
    """Class of an extra image: its stem reversed is URL-safe base64 of ``<Class>_<N>``."""
    token = path.stem[::-1]
    decoded = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    return decoded.rsplit("_", 1)[0]


def train_reference(work: Path) -> Path:
    """Prepare + train the reference model (the guide's chapter 2.5 settings)."""
    from planets_mlops.prepare import PrepareParams, prepare_dataset
    from planets_mlops.train import TrainParams, train_model

    prepared, model = work / "prepared", work / "model"
    prepare_dataset(RAW, prepared, PrepareParams())
    train_model(prepared, model, TrainParams(lr=0.001, epochs=10, conv_size=64, dense_size=128))
    return model


def multipart_request(host: str, path: Path) -> bytes:
    """One complete keep-alive HTTP/1.1 POST /predict with ``path`` as field ``image``."""
    boundary = "benchboundary7f3a"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{path.name}"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + path.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    head = (
        f"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/form-data; "
        f"boundary={boundary}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bytes]:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    body = await reader.readexactly(length) if length else b""
    return status, body


async def _client(
    host: str,
    port: int,
    requests: list[bytes],
    offset: int,
    deadline: float,
    latencies: list[float],
    errors: list[str],
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    cycle = itertools.islice(itertools.cycle(requests), offset, None)
    try:
        while time.perf_counter() < deadline:
            request = next(cycle)
            started = time.perf_counter()
            try:
                status, body = await _exchange(reader, writer, request)
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                errors.append(f"connection: {exc!r}")
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                continue
            latencies.append(time.perf_counter() - started)
            if status != 200:
                errors.append(f"{status}: {body[:200]!r}")
    finally:
        writer.close()


WRK_SCRIPT = Path(__file__).with_name("wrk_requests.lua")
# The load generator of every load() call: "wrk" or "python" (main() sets it from
# --load-generator), and the request file wrk replays.
GENERATOR = {"name": "python", "requests_file": None}


def choose_generator(name: str, requests: list[bytes], work: Path) -> str:
    """Set the load generator: ``wrk`` (when on PATH, for ``auto``) or the asyncio client.

    For wrk, ``requests`` are written to ``work/wrk-requests.bin`` (each preceded by its
    length), the file ``wrk_requests.lua`` replays.
    """
    import shutil

    if name == "auto":
        name = "wrk" if shutil.which("wrk") else "python"
        if name == "python":
            log.warning(
                "wrk is not installed (scripts/setup_debian_tools.sh): the asyncio client drives the load"
            )
    if name == "wrk":
        path = work / "wrk-requests.bin"
        with path.open("wb") as out:
            for request in requests:
                out.write(b"%d\n" % len(request) + request)
        GENERATOR["requests_file"] = path
    GENERATOR["name"] = name
    return name


def load(url: str, requests: list[bytes], clients: int, seconds: float) -> dict[str, Any]:
    """Drive /predict with ``clients`` concurrent keep-alive connections for ``seconds``.

    With the load generator :func:`choose_generator` set; ``generator_cpu_share`` is its
    own CPU time (user + system) over the run's wall time; ``worker_cpu_s`` the CPU seconds
    each BentoML worker on this machine used meanwhile (by worker id: whether the
    connections spread over the workers).
    """
    before = workers_cpu_s()
    if GENERATOR["name"] == "wrk":
        row = load_wrk(url, clients, seconds)
    else:
        cpu = time.process_time()
        row = load_python(url, requests, clients, seconds)
        row["generator"] = "python"
        row["generator_cpu_share"] = round((time.process_time() - cpu) / row["seconds"], 3)
    after = workers_cpu_s()
    row["worker_cpu_s"] = [round(after[w] - before.get(w, 0.0), 2) for w in sorted(after)]
    return row


def workers_cpu_s() -> dict[str, float]:
    """CPU seconds (user + system) of every BentoML worker process here, by ``--worker-id``.

    One server runs at a time in this benchmark (``bentoml serve`` or the container, whose
    processes this host sees), so these are its workers.
    """
    found: dict[str, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            worker = argv[argv.index(b"--worker-id") + 1].decode()
        except (OSError, ValueError, IndexError):  # gone, or not a worker
            continue
        found[worker] = found.get(worker, 0.0) + process_cpu_s(entry.name)
    return found


def load_wrk(url: str, clients: int, seconds: float) -> dict[str, Any]:
    """:func:`load` by ``wrk -t1`` (one thread, ``clients`` connections, whole seconds)."""
    import subprocess

    whole = max(1, round(seconds))
    command = [
        "wrk", "-t1", f"-c{clients}", f"-d{whole}s", "--timeout", "10s",
        "-s", str(WRK_SCRIPT), url, "--", str(GENERATOR["requests_file"]),
    ]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    process = subprocess.run(command, capture_output=True, text=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    out, err = process.stdout, process.stderr
    lines = [line for line in out.splitlines() if line.startswith("WRK_RESULT ")]
    if process.returncode or not lines:
        raise RuntimeError(f"wrk failed ({process.returncode}): {err.strip() or out.strip()}")
    result = json.loads(lines[0].removeprefix("WRK_RESULT "))
    elapsed = result["duration_us"] / 1e6
    errors = {k: result[k] for k in ("connect", "read", "write", "status", "timeout") if result[k]}
    row: dict[str, Any] = {
        "clients": clients,
        "seconds": round(elapsed, 2),
        "requests": result["requests"],
        "rps": round(result["requests"] / elapsed, 1),
        "p50_ms": round(result["p50_us"] / 1000, 2),
        "p95_ms": round(result["p95_us"] / 1000, 2),
        "p99_ms": round(result["p99_us"] / 1000, 2),
        "errors": sum(errors.values()),
        "error_samples": [f"{k}: {v}" for k, v in errors.items()],
        "generator": "wrk",
        # The children reaped meanwhile: wrk alone.
        "generator_cpu_share": round(
            (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / elapsed, 3
        ),
    }
    return row


def load_python(url: str, requests: list[bytes], clients: int, seconds: float) -> dict[str, Any]:
    """:func:`load` by the asyncio client, in this process."""
    host, port = url.removeprefix("http://").split(":")
    latencies: list[float] = []
    errors: list[str] = []

    async def run() -> float:
        started = time.perf_counter()
        deadline = started + seconds
        await asyncio.gather(
            *(_client(host, int(port), requests, i * 61, deadline, latencies, errors) for i in range(clients))
        )
        return time.perf_counter() - started

    elapsed = asyncio.run(run())
    ms = np.array(latencies) * 1000.0
    return {
        "clients": clients,
        "seconds": round(elapsed, 2),
        "requests": len(latencies),
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p95_ms": round(float(np.percentile(ms, 95)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "errors": len(errors),
        "error_samples": errors[:3],
    }


def tree_rss_bytes(root_pid: int) -> int:
    """RSS of ``root_pid`` and all its descendants (supervisor + workers)."""
    total = 0
    page = os.sysconf("SC_PAGE_SIZE")
    for pid in process_tree(root_pid):
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page
        except (OSError, ValueError, IndexError):
            continue
    return total


class RssSampler(threading.Thread):
    """Samples the server tree's RSS every 100 ms; ``peak`` is the maximum seen."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self._stop_event = pid, 0, threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak = max(self.peak, tree_rss_bytes(self.pid))
            self._stop_event.wait(0.1)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        return self.peak


def accuracy(server: LocalServer, paths: list[Path]) -> float:
    import httpx

    correct = 0
    with httpx.Client(base_url=server.url, timeout=30, trust_env=False) as client:
        for path in paths:
            answer = client.post("/predict", files={"image": (path.name, path.read_bytes(), "image/jpeg")})
            answer.raise_for_status()
            correct += answer.json()["closest_class"] == label_of(path)
    return correct / len(paths)


def first_answer_s(server: LocalServer, request: bytes) -> float:
    """Seconds from starting ``bentoml serve`` to the first 200 from /predict."""
    host, port = server.url.removeprefix("http://").split(":")

    async def once() -> int:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            return (await _exchange(reader, writer, request))[0]
        finally:
            writer.close()

    status = asyncio.run(once())
    if status != 200:
        raise RuntimeError(f"first /predict answered {status}")
    return time.monotonic() - server.started_at


def bench(args: argparse.Namespace) -> dict[str, Any]:
    from planets_mlops.package import package_model

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    model_dir = Path(args.model_dir).resolve() if args.model_dir else None
    if model_dir is None:
        model_dir = work / "model"
        if not (args.reuse and (model_dir / "model.onnx").is_file()):
            started = time.monotonic()
            model_dir = train_reference(work)
            log.info("Trained the reference model in %.1f s", time.monotonic() - started)
    archive = work / "planets.bento"
    info = package_model(model_dir, archive, metrics={}, data_revision="bench", model_uri=model_dir.as_uri())
    paths = sorted(EXTRA.glob("*.jpg"))
    requests = [multipart_request("127.0.0.1", path) for path in paths]
    generator = choose_generator(args.load_generator, requests, work)
    env = {"PLANETS_WORKERS": str(args.workers)}
    if args.bytecode_cache:
        # What a serving image with pre-compiled bytecode gets; this machine's environment
        # sets PYTHONDONTWRITEBYTECODE and the venv has no .pyc, so every process compiles
        # BentoML's ~800 modules (~1 s) at every start.
        env.update(PYTHONPYCACHEPREFIX=str(Path(args.bytecode_cache).resolve()), PYTHONDONTWRITEBYTECODE="")
    results: dict[str, Any] = {
        "bento_tag": info.bento_tag,
        "workers": args.workers,
        "cpus": os.cpu_count(),
        "images": len(paths),
        "bytecode_cache": bool(args.bytecode_cache),
        "load_generator": generator,
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
    }
    home = work / "bentoml-home"
    starts = []
    for _ in range(args.cold_starts):
        with serve_bento(archive, env=env, home=home, ready_timeout=120) as server:
            starts.append((round(server.ready_s, 2), round(first_answer_s(server, requests[0]), 2)))
    results["ready_s"] = [ready for ready, _ in starts]
    results["cold_start_s"] = [first for _, first in starts]
    if args.clients:
        with serve_bento(archive, env=env, home=home, ready_timeout=120) as server:
            sampler = RssSampler(server.process.pid)
            sampler.start()
            results["extra_accuracy"] = round(accuracy(server, paths), 4)
            results["load"] = [load(server.url, requests, clients, args.seconds) for clients in args.clients]
            results["peak_rss_mb"] = round(sampler.stop() / 2**20, 1)
    if args.monitoring:
        results["monitoring"] = monitoring_comparison(archive, requests, env, home, work, args)
    if args.container:
        results["container"] = container_comparison(archive, info.bento_tag, requests, env, args)
    results["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return results


def container_comparison(
    archive: Path, bento_tag: str, requests: list[bytes], env: dict[str, str], args: argparse.Namespace
) -> dict[str, Any]:
    """The serving image as a pod runs it beside ``bentoml serve`` of the same bento, alternating."""
    from planets_mlops.app.containers import serve_container
    from planets_mlops.app.dev.gcs_emulator import start_emulator, stop_emulator, use_emulator_environment
    from planets_mlops.components.images import SERVING_IMAGE

    parent = fair_cpu_parent("planets-bench-serving", args.workers) if args.fair_cpu else None
    podman_args = ["--cgroup-parent", parent] if parent else []
    use_emulator_environment()
    emulator = start_emulator()
    previous = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = emulator.url  # the container is given it (container_env)
    rows: dict[str, list[dict[str, Any]]] = {"serve": [], "container": []}
    try:
        from planets_mlops.storage import make_client

        bucket = emulator.make_bucket("bench-artifacts").removeprefix("gs://")
        name = "pipeline-root/run-1/package-model/bento/planets.bento"
        make_client().bucket(bucket).blob(name).upload_from_filename(str(archive), checksum="md5")
        uri = f"gs://{bucket}/{name}"
        order = [
            m
            for r in range(args.rounds)
            for m in (("serve", "container") if r % 2 == 0 else ("container", "serve"))
        ]
        for mode in order:
            entered, entered_wall = time.monotonic(), time.time()
            if mode == "container":
                server_cm = serve_container(
                    SERVING_IMAGE, uri, bento_tag, env=env, ready_timeout=180, podman_args=podman_args
                )
            else:
                server_cm = serve_bento(archive, env=env, ready_timeout=180)  # a fresh BentoML home
            with server_cm as server:
                row: dict[str, Any] = {
                    "ready_s": round(server.ready_s, 2),
                    "ready_with_import_s": round(time.monotonic() - entered, 2),
                }
                if mode == "container":
                    row.update(container_phases(server.log_path.read_text(errors="replace"), entered_wall))
                load(server.url, requests, 8, 2.0)  # warm-up, not counted
                eight = load(server.url, requests, 8, args.seconds)
                one = load(server.url, requests, 1, args.seconds)
                row.update(
                    rps_8=eight["rps"],
                    p50_ms_8=eight["p50_ms"],
                    rps_1=one["rps"],
                    p50_ms_1=one["p50_ms"],
                    errors=eight["errors"] + one["errors"],
                    generator_cpu_8=eight["generator_cpu_share"],
                    generator_cpu_1=one["generator_cpu_share"],
                    worker_cpu_8=eight["worker_cpu_s"],
                    load_average=round(os.getloadavg()[0], 2),
                )
            log.info("%s: %s", mode, row)
            rows[mode].append(row)
    finally:
        stop_emulator(emulator.process)
        if previous is None:
            os.environ.pop("STORAGE_EMULATOR_HOST", None)
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = previous

    def median(mode: str, key: str) -> float:
        return round(float(np.median([r[key] for r in rows[mode]])), 2)

    keys = ("ready_s", "ready_with_import_s", "rps_8", "p50_ms_8", "rps_1", "p50_ms_1")
    medians = {mode: {key: median(mode, key) for key in keys} for mode in rows}
    for key in ("fetched_s", "imported_s"):
        if all(key in r for r in rows["container"]):
            medians["container"][key] = median("container", key)
    # Like for like: the container's start includes fetching and importing the bento.
    compared = {
        "ready": ("ready_with_import_s", "ready_s"),
        "rps_8": ("rps_8", "rps_8"),
        "p50_ms_1": ("p50_ms_1", "p50_ms_1"),
    }
    return {
        "image": SERVING_IMAGE,
        "cgroup_parent": parent,
        "rounds": args.rounds,
        "seconds": args.seconds,
        "rows": rows,
        "medians": medians,
        "ratio_container_to_serve": {
            name: round(medians["container"][c] / medians["serve"][s], 3) if medians["serve"][s] else None
            for name, (s, c) in compared.items()
        },
        # Each round runs its two servers back to back: the ratio within a round is not moved
        # by the host's speed drifting between rounds (seen here: 1,832 to 1,118 req/s in 4 minutes).
        "round_ratios": {
            name: [
                round(there[c] / here[s], 3) if here[s] else None
                for here, there in zip(rows["serve"], rows["container"], strict=True)
            ]
            for name, (s, c) in compared.items()
        },
        "errors": sum(r["errors"] for r in rows["serve"] + rows["container"]),
    }


def container_phases(log_text: str, started: float) -> dict[str, float]:
    """Seconds from ``podman run`` to the entrypoint's fetch and import, from its log lines.

    ``fetched_s``: the container started, the interpreter and the entrypoint loaded and the
    bento downloaded ("Downloaded ..."); ``imported_s``: then in the stores ("Starting
    bentoml serve"). The rest to ``/readyz`` is ``bentoml serve``'s own start.
    """
    import datetime
    import re

    phases = {}
    for key, marker in (("fetched_s", "Downloaded "), ("imported_s", "Starting bentoml serve")):
        line = next((x for x in log_text.splitlines() if marker in x), None)
        stamp = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})", line or "")
        if stamp:
            when = datetime.datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S,%f")
            phases[key] = round(when.replace(tzinfo=datetime.UTC).timestamp() - started, 2)
    return phases


def tree_cpu_s(root_pid: int) -> float:
    """CPU seconds (user + system) used so far by ``root_pid`` and its descendants."""
    return sum(process_cpu_s(pid) for pid in process_tree(root_pid))


def process_cpu_s(pid: int | str) -> float:
    """CPU seconds (user + system) used so far by process ``pid``; 0 once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def count_records(root: Path) -> int:
    """Lines in every record object under ``root``."""
    return sum(p.read_bytes().count(b"\n") for p in root.rglob("*.jsonl"))


def monitoring_comparison(
    archive: Path,
    requests: list[bytes],
    env: dict[str, str],
    home: Path,
    work: Path,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """8-client throughput and server CPU per request with records off and on, ``args.rounds`` each."""
    import shutil

    rows: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    written, answered = 0, 0
    # off, on, then on, off, ...: neither mode always runs first on a machine whose load drifts.
    order = [mode for r in range(args.rounds) for mode in (("off", "on") if r % 2 == 0 else ("on", "off"))]
    for mode in order:
        store = work / "monitoring-records"
        shutil.rmtree(store, ignore_errors=True)
        extra = {"PLANETS_MONITORING_URI": str(store)} if mode == "on" else {}
        with serve_bento(archive, env={**env, **extra}, home=home, ready_timeout=120) as server:
            warm = load(server.url, requests, 8, 2.0)  # warm-up, not counted
            cpu = tree_cpu_s(server.process.pid)
            row = load(server.url, requests, 8, args.seconds)
            row["server_cpu_ms_per_request"] = round(
                (tree_cpu_s(server.process.pid) - cpu) * 1000 / max(row["requests"], 1), 3
            )
            rows[mode].append(row)
            if mode == "on":
                counts = json.loads(_get_json(server.url + "/metadata"))["monitoring"]
                log.info("records of one worker: %s", counts)
                # The writer thread's own CPU per record, in the worker that answered.
                row["writer_cpu_us_per_record"] = round(
                    counts["writer_cpu_s"] * 1e6 / max(counts["accepted"], 1), 1
                )
        if mode == "on":  # the server is stopped (SIGTERM): every record is written
            written += count_records(store)
            answered += warm["requests"] + row["requests"]
    off = float(np.median([r["rps"] for r in rows["off"]]))
    on = float(np.median([r["rps"] for r in rows["on"]]))
    return {
        "clients": 8,
        "rounds": args.rounds,
        "rps_off": [r["rps"] for r in rows["off"]],
        "rps_on": [r["rps"] for r in rows["on"]],
        "median_rps_off": round(off, 1),
        "median_rps_on": round(on, 1),
        "ratio_on_off": round(on / off, 3) if off else None,
        "p50_ms_off": [r["p50_ms"] for r in rows["off"]],
        "p50_ms_on": [r["p50_ms"] for r in rows["on"]],
        "cpu_ms_per_request_off": [r["server_cpu_ms_per_request"] for r in rows["off"]],
        "cpu_ms_per_request_on": [r["server_cpu_ms_per_request"] for r in rows["on"]],
        "writer_cpu_us_per_record": [r["writer_cpu_us_per_record"] for r in rows["on"]],
        "errors": sum(r["errors"] for r in rows["off"] + rows["on"]),
        # Warm-up requests are recorded too, and counted here.
        "records_written": written,
        "requests_answered": answered,
    }


def _get_json(url: str) -> str:
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as response:
        return response.read().decode()


def table(results: dict[str, Any]) -> str:
    lines = [
        f"bento {results['bento_tag']}, {results['workers']} worker(s), {results['cpus']} CPUs",
        f"cold starts to first answer: {results['cold_start_s']} s (readyz {results['ready_s']} s, "
        f"bytecode cache: {results['bytecode_cache']})",
    ]
    if "load" in results:
        lines += [
            f"peak RSS of server tree: {results['peak_rss_mb']} MB; "
            f"accuracy on {results['images']} extra images: {results['extra_accuracy']}",
            f"load generator: {results['load_generator']}; load average "
            f"{results['load_average_start']} at the start, {results['load_average_end']} at the end",
            "| clients | req/s | p50 ms | p95 ms | p99 ms | errors | requests | generator CPU (cores) "
            "| CPU s per worker |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
    for row in results.get("load", []):
        lines.append(
            f"| {row['clients']} | {row['rps']} | {row['p50_ms']} | {row['p95_ms']} | "
            f"{row['p99_ms']} | {row['errors']} | {row['requests']} | {row['generator_cpu_share']} "
            f"| {row.get('worker_cpu_s')} |"
        )
    if "container" in results:
        c = results["container"]
        modes = ("serve", "container")
        keys = ("ready_s", "ready_with_import_s", "rps_8", "p50_ms_8", "rps_1", "p50_ms_1")
        extra = ("generator_cpu_8", "generator_cpu_1", "load_average")
        lines += [
            "",
            f"serving image {c['image']} (podman, non-root, read-only root, bento from the GCS emulator) "
            f"beside bentoml serve, {c['rounds']} alternating rounds of {c['seconds']} s "
            f"(load generator: {results['load_generator']}; container CPU cgroup parent: "
            f"{c['cgroup_parent'] or 'podman default, one process weight'}):",
            "| server | ready s (to /readyz) | ready s with bento fetch/import | req/s, 8 clients | "
            "p50 ms, 8 clients | req/s, 1 client | p50 ms, 1 client | generator CPU, 8 / 1 clients | "
            "load average | CPU s per worker, 8 clients |",
            "|---|---|---|---|---|---|---|---|---|---|",
            *(
                f"| {mode} | "
                + " | ".join(str([r[k] for r in c["rows"][mode]]) for k in (*keys, *extra[:1]))
                + f" / {[r[extra[1]] for r in c['rows'][mode]]} | {[r[extra[2]] for r in c['rows'][mode]]} "
                + f"| {[r.get('worker_cpu_8') for r in c['rows'][mode]]} |"
                for mode in modes
            ),
            *(
                f"| median {mode} | " + " | ".join(str(c["medians"][mode][k]) for k in keys) + " | | | |"
                for mode in modes
            ),
            "container start, from podman run (medians): entrypoint up and bento fetched "
            f"{c['medians']['container'].get('fetched_s')} s, imported "
            f"{c['medians']['container'].get('imported_s')} s, /readyz "
            f"{c['medians']['container']['ready_s']} s; bentoml serve: imported "
            f"{round(c['medians']['serve']['ready_with_import_s'] - c['medians']['serve']['ready_s'], 2)} s "
            f"(medians' difference), then /readyz {c['medians']['serve']['ready_s']} s",
            f"container / bentoml serve (ready: with the bento import on both sides): "
            f"{c['ratio_container_to_serve']} (target: within 10 %); errors {c['errors']}",
            "the same ratio within each round (its two servers back to back), and their median: "
            + "; ".join(
                f"{name} {values} median {round(float(np.median(values)), 3)}"
                for name, values in c["round_ratios"].items()
                if None not in values
            ),
        ]
    if "monitoring" in results:
        m = results["monitoring"]
        lines += [
            "",
            f"prediction records, {m['clients']} clients, {m['rounds']} alternating rounds:",
            "| records | req/s per round | median req/s | p50 ms per round | server CPU ms per request |",
            "|---|---|---|---|---|",
            *(
                f"| {mode} | {m[f'rps_{mode}']} | {m[f'median_rps_{mode}']} | {m[f'p50_ms_{mode}']} | "
                f"{m[f'cpu_ms_per_request_{mode}']} |"
                for mode in ("off", "on")
            ),
            f"writer thread CPU per record (us, one worker per round): {m['writer_cpu_us_per_record']}",
            f"on/off: {m['ratio_on_off']} (target >= 0.90); errors {m['errors']}; records written "
            f"{m['records_written']} for {m['requests_answered']} requests answered",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", help="model folder from train_model (default: train one)")
    parser.add_argument("--work", default=str(REPO / ".work" / "bench"), help="scratch folder")
    parser.add_argument("--reuse", action="store_true", help="reuse WORK/model if it exists")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, nargs="*", default=[1, 8], help="none: skip this phase")
    parser.add_argument("--seconds", type=float, default=15.0, help="duration of each load phase")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--cold-starts", type=int, default=3, help="server starts timed to first answer")
    parser.add_argument("--bytecode-cache", help="PYTHONPYCACHEPREFIX for the server (warm after 1st start)")
    parser.add_argument(
        "--monitoring", action="store_true", help="also compare records off and on, 8 clients"
    )
    parser.add_argument(
        "--container", action="store_true", help="also compare the serving image with bentoml serve"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating rounds of --monitoring, --container"
    )
    parser.add_argument(
        "--no-fair-cpu",
        dest="fair_cpu",
        action="store_false",
        help="run the container in Podman's default CPU cgroup (one process's weight)",
    )
    parser.add_argument(
        "--load-generator",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="wrk (auto: when installed) or the asyncio client",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    results = bench(args)
    print(json.dumps(results, indent=1))
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
