"""Bounded load check: valid requests next to pixel-heavy batches, against real ``bentoml serve``.

Not a test. One model folder is packaged twice: with this checkout's serving code and,
with ``--reference-src DIR``, with the serving code of another checkout (e.g. a worktree
of ``main``), so both run side by side in one run on the same machine. Each bento is
served with its defaults (2 workers) on 127.0.0.1 and, for ``--seconds`` (60), gets:

* ``--valid-clients`` (4) keep-alive clients sending ``/predict`` with the 128x128 JPEGs
  of data/planets/extra, one request after the other;
* ``--hostile-clients`` (4) clients, each request on a new connection (so that they reach
  every worker, as an attacker's would), sending in turn, for each load of ``--loads``:

  - ``pixels``: the batch of the probe (64 PNGs of 8800x8800, ~5 MB: each under Pillow's
    bomb guard) and a batch at the edge of the limits (16 JPEGs of 1024x1024, 16 MP in all);
  - ``scan-bomb``: progressive JPEG scan bombs (issue 26): a 512x512 one of ~786,000
    scans (9 MiB, few pixels: it counted as light and was decoded on the event loop), a
    2048x2048 one of ~170,000 scans (3 MiB, heavy: it held its decode slot for minutes),
    and a 2048x2048 progressive one at the scan limit (100 scans: accepted, decoded by a
    decode child within the deadline);
* a poller in its own process opening a new connection to ``/livez`` every 0.25 s, as a
  liveness probe does, with a 1 s timeout.

Printed per bento and load: valid-request count, p50/p99 and non-200 count; 5xx count over every
request; hostile answers by status; ``/livez`` availability (share of polls answered 200
within 1 s) and its slowest answer.

Usage::

    git worktree add --detach /tmp/ref main
    .venv/bin/python -m benchmarks.bench_hostile --model-dir M --reference-src /tmp/ref
    .venv/bin/python -m benchmarks.bench_hostile --seconds 20            # trains a small model
    .venv/bin/python -m benchmarks.bench_hostile --model-dir M --loads scan-bomb
"""

from __future__ import annotations

import argparse
import asyncio
import io
import itertools
import json
import logging
import multiprocessing
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from planets_mlops.app.dev import hostile_images as hostile
from planets_mlops.app.dev.serve_local import serve_bento

REPO = Path(__file__).resolve().parents[1]
log = logging.getLogger("bench_hostile")
EXTRA = REPO / "data" / "planets" / "extra"
RAW = REPO / "data" / "planets" / "raw"
BOUNDARY = "benchhostile5c1e"


def multipart(files: list[tuple[str, bytes]]) -> bytes:
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + blob
        + b"\r\n"
        for name, blob in files
    ]
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def request(path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


LOADS = ("pixels", "scan-bomb")


def scan_bombs() -> list[tuple[str, bytes]]:
    """(kind, complete HTTP request) of the progressive JPEG scan bombs."""
    from planets_mlops.imaging import LIMITS

    small = hostile.progressive_scan_bomb(512, 786_000)
    large = hostile.progressive_scan_bomb(2048, 170_000)
    edge = hostile.progressive_scan_bomb(2048, LIMITS.max_scans - 10)
    return [
        (
            f"512x512 JPEG, 786k scans ({len(small) / 2**20:.1f} MiB)",
            request("/predict", multipart([("s.jpg", small)])),
        ),
        (
            f"2048x2048 JPEG, 170k scans ({len(large) / 2**20:.1f} MiB)",
            request("/predict", multipart([("l.jpg", large)])),
        ),
        (f"2048x2048 JPEG, {LIMITS.max_scans} scans", request("/predict", multipart([("e.jpg", edge)]))),
    ]


def hostile_requests(kind: str = "pixels") -> list[tuple[str, bytes]]:
    """(kind, complete HTTP request) of the heavy requests of load ``kind`` (:data:`LOADS`)."""
    from PIL import Image

    if kind == "scan-bomb":
        return scan_bombs()
    huge = hostile.huge_png(8800)
    photo = Image.open(sorted(EXTRA.glob("*.jpg"))[0]).convert("RGB").resize((1024, 1024))
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=90)
    edge = buffer.getvalue()
    return [
        ("64 x 8800x8800 PNG", request("/predict_batch", multipart([(f"{i}.png", huge) for i in range(64)]))),
        (
            "16 x 1024x1024 JPEG",
            request("/predict_batch", multipart([(f"{i}.jpg", edge) for i in range(16)])),
        ),
    ]


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes) -> int:
    writer.write(data)
    await writer.drain()
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("closed")
    status = int(status_line.split()[1])
    length, close = 0, False
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        if name.lower() == "content-length":
            length = int(value)
        elif name.lower() == "connection" and "close" in value.lower():
            close = True
    await reader.readexactly(length)
    if close:
        raise ConnectionResetError(status)
    return status


async def _client(
    host: str,
    port: int,
    requests: list[tuple[str, bytes]],
    until: float,
    out: list[tuple[str, int, float]],
    fresh: bool = False,
) -> None:
    """Send ``requests`` in turn until ``until``; ``fresh``: a new connection for each."""
    reader = writer = None
    for kind, data in itertools.cycle(requests):
        if time.monotonic() >= until:
            break
        started = time.monotonic()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            assert reader is not None
            status = await asyncio.wait_for(
                _exchange(reader, writer, data), timeout=max(1.0, until + 60 - started)
            )
        except ConnectionResetError as exc:
            status = int(exc.args[0]) if exc.args and isinstance(exc.args[0], int) else -1
            writer = None
        except (TimeoutError, OSError, ValueError, asyncio.IncompleteReadError):
            status = -1  # no answer: connection refused, reset or timed out
            if writer is not None:
                writer.close()
            writer = None
        out.append((kind, status, time.monotonic() - started))
        if fresh and writer is not None:
            writer.close()
            writer = None
    if writer is not None:
        writer.close()


def _poll_livez(url: str, seconds: float, queue: Any) -> None:
    import http.client

    host, port = url.removeprefix("http://").split(":")
    answers = []
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        started = time.monotonic()
        try:
            connection = http.client.HTTPConnection(host, int(port), timeout=1.0)
            connection.request("GET", "/livez")
            status = connection.getresponse().status
            connection.close()
        except OSError:
            status = -1
        elapsed = time.monotonic() - started
        answers.append((status, elapsed))
        time.sleep(max(0.0, 0.25 - elapsed))
    queue.put(answers)


def load(url: str, args: argparse.Namespace, kind: str = "pixels") -> dict[str, Any]:
    host, port = url.removeprefix("http://").split(":")
    valid = [
        ("valid", request("/predict", multipart([(p.name, p.read_bytes())])))
        for p in sorted(EXTRA.glob("*.jpg"))
    ]
    heavy = hostile_requests(kind)
    queue: Any = multiprocessing.get_context("spawn").Queue()
    poller = multiprocessing.get_context("spawn").Process(target=_poll_livez, args=(url, args.seconds, queue))
    poller.start()
    out: list[tuple[str, int, float]] = []

    async def run() -> None:
        until = time.monotonic() + args.seconds
        clients = [
            _client(host, int(port), valid[i :: args.valid_clients], until, out)
            for i in range(args.valid_clients)
        ]
        clients += [
            _client(
                host, int(port), heavy[i % len(heavy) :] + heavy[: i % len(heavy)], until, out, fresh=True
            )
            for i in range(args.hostile_clients)
        ]
        await asyncio.gather(*clients)

    asyncio.run(run())
    livez = queue.get(timeout=args.seconds + 60)
    poller.join()
    valid_answers = [(status, seconds) for kind, status, seconds in out if kind == "valid"]
    latencies = np.array([seconds for status, seconds in valid_answers if status == 200]) * 1000
    by_kind: dict[str, Counter] = {}
    for kind, status, _ in out:
        if kind != "valid":
            by_kind.setdefault(kind, Counter())[status] += 1
    on_time = [status == 200 and seconds <= 1.0 for status, seconds in livez]
    return {
        "valid_requests": len(valid_answers),
        "valid_ok": int(latencies.size),
        "valid_not_200": Counter(s for s, _ in valid_answers if s != 200),
        "valid_p50_ms": round(float(np.percentile(latencies, 50)), 1) if latencies.size else None,
        "valid_p99_ms": round(float(np.percentile(latencies, 99)), 1) if latencies.size else None,
        "5xx": sum(1 for _, status, _ in out if 500 <= status < 600),
        "no_answer": sum(1 for _, status, _ in out if status < 0),
        "hostile": {kind: dict(sorted(counts.items())) for kind, counts in by_kind.items()},
        "livez_polls": len(livez),
        "livez_on_time": round(sum(on_time) / max(1, len(on_time)), 4),
        "livez_slowest_s": round(max((s for _, s in livez), default=0.0), 3),
    }


def package(model_dir: Path, archive: Path, source: Path) -> None:
    """Package ``model_dir`` with the serving code of the checkout at ``source``."""
    code = (
        "import sys; from pathlib import Path; from planets_mlops.package import package_model; "
        "m = Path(sys.argv[1]); package_model(m, Path(sys.argv[2]), metrics={}, data_revision='bench', "
        "model_uri=m.as_uri())"
    )
    env = {**os.environ, "PYTHONPATH": str(source)}
    subprocess.run(
        [sys.executable, "-c", code, str(model_dir), str(archive)], env=env, cwd=source, check=True
    )


def train_small(work: Path) -> Path:
    from planets_mlops.prepare import PrepareParams, prepare_dataset
    from planets_mlops.train import TrainParams, train_model

    prepare_dataset(RAW, work / "prepared", PrepareParams())
    train_model(work / "prepared", work / "model", TrainParams(epochs=3))
    return work / "model"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", help="model folder from train_model (default: train one)")
    parser.add_argument("--reference-src", help="checkout whose serving code is measured first, side by side")
    parser.add_argument("--work", default=str(REPO / ".work" / "bench-hostile"), help="scratch folder")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--valid-clients", type=int, default=4)
    parser.add_argument("--hostile-clients", type=int, default=4)
    parser.add_argument(
        "--loads", default=",".join(LOADS), help=f"comma-separated hostile loads, of {', '.join(LOADS)}"
    )
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    model_dir = Path(args.model_dir).resolve() if args.model_dir else train_small(work)
    sources = {"this checkout": REPO}
    if args.reference_src:
        sources = {f"reference ({args.reference_src})": Path(args.reference_src).resolve(), **sources}
    results = {}
    for label, source in sources.items():
        archive = work / f"{len(results)}.bento"
        package(model_dir, archive, source)
        with serve_bento(archive, ready_timeout=180) as server:
            for kind in [k.strip() for k in args.loads.split(",") if k.strip()]:
                if kind not in LOADS:
                    parser.error(f"--loads: {kind!r} is not one of {', '.join(LOADS)}")
                log.info("%s: serving %s; %.0f s of the %s load", label, server.tag, args.seconds, kind)
                name = f"{label}, {kind} load"
                results[name] = load(server.url, args, kind)
                print(f"\n== {name}", flush=True)
                for key, value in results[name].items():
                    print(f"  {key:16} {value}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
