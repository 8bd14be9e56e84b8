"""Benchmark: the ``training`` pipeline in its images (DockerRunner on Podman) beside the same
run under the subprocess runner, side by side in one run. Not a test.

Both runs read the same inputs the same way: a git + DVC data repository with a subset of
the bundled data set, served by ``git daemon`` on 127.0.0.1, its DVC remote on the GCS
emulator. Only the runner differs: ``SubprocessRunner`` runs each task as a process of this
environment; ``DockerRunner`` runs each in the image the compiled IR names (``make images``
first), as the image's non-root user. The runs alternate (subprocess, containers, ...) so
that machine load hits both alike. The task containers run under a CPU cgroup with the
weight of two processes (:mod:`benchmarks.fair_cpu`; a training task is the task and its
TensorFlow child), as the subprocess runner's tasks weigh outside; ``--no-fair-cpu`` leaves
them in Podman's default cgroup, which weighs as one process. Prints per-task and whole
wall times, their ratio, and for the container runs each task container's phases
(``planets_mlops.app.containers.PHASES``): image lookup, create + start, run, logs, remove.

``--split`` measures instead what one task container costs, phase by phase, through the
same Docker-compatible API and the same ``run_container`` as DockerRunner, in each image
(``--tags`` compares builds, e.g. before and after a Dockerfile change, alternating):
the client and engine query kfp makes per task, the image lookup, a container that runs
``true`` (start and removal alone), ``python -c pass`` (the interpreter) and the imports of
a task (``kfp.dsl.executor_main`` + the step module), beside the same imports as a host
process (what the subprocess runner pays). Artifacts are not copied under kfp.local: the
pipeline root is bind-mounted at the same path (kfp.local.docker_task_handler), so a task
reads and writes them in place.

Usage::

    .venv/bin/python -m benchmarks.bench_containers                 # 10 classes x 30 images, 2 epochs
    .venv/bin/python -m benchmarks.bench_containers --per-class 150 --epochs 10 --repeats 2
    .venv/bin/python -m benchmarks.bench_containers --split --repeats 3 --tags 0.1.0-OLD 0.1.0-NEW
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.fair_cpu import fair_cpu_parent
from planets_mlops import metric_names
from planets_mlops.app.dev.gcs_emulator import (
    dvc_remote_config,
    start_emulator,
    stop_emulator,
    use_emulator_environment,
)
from planets_mlops.app.dev.sample_data import copy_subset

use_emulator_environment()  # before gcsfs and google.auth load (inside the functions below)
REPO = Path(__file__).resolve().parents[1]
log = logging.getLogger("bench_containers")
CLASSES = sorted(p.name for p in (REPO / "data" / "planets" / "raw").iterdir() if p.is_dir())
# What a task of each image imports before its step runs: KFP's executor and a step module
# (evaluate: ONNX Runtime + plots; train: TensorFlow).
TASK_IMPORTS = {
    "runtime": "import kfp.dsl.executor_main, planets_mlops.evaluate",
    "train-gpu": "import kfp.dsl.executor_main, planets_mlops.train",
}


def bench(args: argparse.Namespace) -> dict[str, Any]:
    from planets_mlops.app import containers
    from planets_mlops.app.containers import docker_runner, git_daemon, podman_service, shared_pipeline_root
    from planets_mlops.app.local import run_local
    from planets_mlops.components.images import RUNTIME_IMAGE, TRAINING_GPU_IMAGE
    from planets_mlops.datarepo import create_data_repo
    from planets_mlops.pipelines.training import training

    # A training task is two busy processes at most (the task and its TensorFlow child).
    parent = fair_cpu_parent("planets-bench-containers", 2) if args.fair_cpu else None
    work = Path(tempfile.mkdtemp(prefix="bench-containers-"))
    emulator = start_emulator()
    os.environ["STORAGE_EMULATOR_HOST"] = emulator.url
    results: dict[str, Any] = {
        "images": [RUNTIME_IMAGE, TRAINING_GPU_IMAGE],
        "classes": len(CLASSES),
        "per_class": args.per_class,
        "epochs": args.epochs,
        "cpus": os.cpu_count(),
        "cgroup_parent": parent,
        "runs": {"subprocess": [], "containers": []},
    }
    try:
        bucket = emulator.make_bucket("bench-dvc")
        remote_config = dvc_remote_config(emulator.url)
        raw = copy_subset(work / "raw", classes=CLASSES, per_class=args.per_class)
        create_data_repo(
            raw, work / "served" / "repo", f"{bucket}/store", remote_config=remote_config, tag="v1"
        )
        arguments = {
            "data_rev": "v1",
            "data_path": "data/raw",
            "dvc_remote_config": remote_config,
            "train_epochs": args.epochs,
        }
        with git_daemon(work / "served") as git_url, podman_service():
            arguments["data_repo_url"] = f"{git_url}/repo"
            for repeat in range(args.repeats):
                for name in ("subprocess", "containers"):
                    root = shared_pipeline_root(work)
                    runner = docker_runner(cgroup_parent=parent) if name == "containers" else None
                    log.info("run %d: %s", repeat + 1, name)
                    containers.PHASES = []
                    try:
                        run = run_local(
                            training, root, log_file=work / f"{name}-{repeat}.log", runner=runner, **arguments
                        )
                        phases = containers.PHASES
                    finally:
                        containers.PHASES = None
                    results["runs"][name].append(
                        {
                            "whole_s": round(run.seconds, 1),
                            "tasks_s": {t: round(r.seconds, 1) for t, r in run.tasks.items()},
                            metric_names.VAL_ACCURACY: run.metadata("evaluate-model", "metrics").get(
                                metric_names.VAL_ACCURACY
                            ),
                            # In the order the tasks ran (one container each).
                            "containers": [
                                {k: v if k == "image" else round(v, 2) for k, v in ph.items()}
                                for ph in phases
                            ],
                        }
                    )
    finally:
        stop_emulator(emulator.process)
        shutil.rmtree(work, ignore_errors=True)
    return results


def table(results: dict[str, Any]) -> str:
    runs = results["runs"]
    tasks = list(runs["subprocess"][0]["tasks_s"])
    lines = [
        f"training pipeline, {results['classes']} classes x {results['per_class']} images, "
        f"{results['epochs']} epoch(s), {results['cpus']} CPUs; median of {len(runs['subprocess'])} run(s)",
        "| step | subprocess s | containers s | difference s |",
        "|---|---|---|---|",
    ]

    def median(name: str, task: str | None) -> float:
        values = [r["whole_s"] if task is None else r["tasks_s"].get(task, 0.0) for r in runs[name]]
        return round(statistics.median(values), 1)

    for task in [*tasks, None]:
        sub, con = median("subprocess", task), median("containers", task)
        lines.append(f"| {task or '**whole run**'} | {sub} | {con} | {con - sub:+.1f} |")
    sub, con = median("subprocess", None), median("containers", None)
    lines += [
        "",
        f"containers / subprocess, whole run: {con / sub:.2f}x (task containers' CPU cgroup parent: "
        f"{results.get('cgroup_parent') or 'podman default, one process weight'})",
    ]
    phases = [ph for r in runs["containers"] for ph in r["containers"]]
    if phases:
        lines += [
            "",
            f"task containers ({len(phases)} over {len(runs['containers'])} run(s)), seconds per container:",
            "| phase | median | sum per run |",
            "|---|---|---|",
        ]
        for key in ("lookup", "start", "run", "logs", "remove"):
            values = [ph[key] for ph in phases]
            per_run = round(sum(values) / len(runs["containers"]), 1)
            lines.append(f"| {key} | {statistics.median(values):.2f} | {per_run} |")
    return "\n".join(lines)


def split(args: argparse.Namespace) -> dict[str, Any]:
    """One task container's cost, phase by phase, per image and per build (``--tags``)."""
    import docker

    from planets_mlops.app import containers
    from planets_mlops.app.containers import container_env, podman_service, run_container
    from planets_mlops.components.images import IMAGE_TAG, image

    tags = args.tags or [IMAGE_TAG]
    commands = {
        "true": ["true"],
        "python": ["python", "-c", "pass"],
        "imports": None,  # per image, TASK_IMPORTS
    }
    samples: dict[str, dict[str, list[float]]] = {}

    def add(key: str, name: str, value: float) -> None:
        samples.setdefault(key, {}).setdefault(name, []).append(round(value, 3))

    with podman_service():
        for repeat in range(args.repeats):
            for name, imports in TASK_IMPORTS.items():
                # The host process, as the subprocess runner starts a task (this environment).
                started = time.perf_counter()
                subprocess.run([sys.executable, "-c", imports], check=True, capture_output=True)
                add(f"host {name}", "imports", time.perf_counter() - started)
                for tag in tags if repeat % 2 == 0 else tags[::-1]:
                    ref = image(name, tag)
                    key = f"{name}:{tag}"
                    # What kfp's DockerTaskHandler does per task before run_docker_container
                    # (a client, the engine's info), and kfp's own image lookup (a listing of
                    # every image) beside the one inspect run_container makes now.
                    started = time.perf_counter()
                    client = docker.from_env()
                    add(key, "client", time.perf_counter() - started)
                    for what, call in (
                        ("info", client.info),
                        ("list images", client.images.list),
                        ("inspect image", functools.partial(client.images.get, ref)),
                    ):
                        started = time.perf_counter()
                        call()
                        add(key, what, time.perf_counter() - started)
                    try:
                        for what, command in commands.items():
                            containers.PHASES = []
                            started = time.perf_counter()
                            with contextlib.redirect_stdout(io.StringIO()):
                                status = run_container(
                                    client,
                                    ref,
                                    command or ["python", "-c", imports],
                                    {},
                                    network_mode="host",
                                    environment=container_env(),
                                )
                            if status != 0:
                                raise RuntimeError(f"{ref}: {command or imports} exited with {status}")
                            add(key, f"{what} whole", time.perf_counter() - started)
                            for phase, seconds in containers.PHASES[0].items():
                                if phase != "image":
                                    add(key, f"{what} {phase}", seconds)
                    finally:
                        containers.PHASES = None
                        client.close()
    return {
        "tags": tags,
        "repeats": args.repeats,
        "cpus": os.cpu_count(),
        "imports": TASK_IMPORTS,
        "samples": samples,
        "medians": {k: {n: round(statistics.median(v), 3) for n, v in d.items()} for k, d in samples.items()},
    }


def split_table(results: dict[str, Any]) -> str:
    lines = [
        f"one task container, medians of {results['repeats']} (s); imports: {results['imports']}",
        "| image | client | info | list images | inspect image | start | run `true` | logs | remove "
        "| `true` whole | `python -c pass` whole | imports whole | imports on the host |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    medians = results["medians"]
    for key, m in medians.items():
        if key.startswith("host "):
            continue
        host = medians.get(f"host {key.split(':')[0]}", {}).get("imports", "")
        cells = [m[k] for k in ("client", "info", "list images", "inspect image")]
        cells += [m[f"true {k}"] for k in ("start", "run", "logs", "remove", "whole")]
        cells += [m["python whole"], m["imports whole"], host]
        lines.append(f"| {key} | " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-class", type=int, default=30, help="images per class (of 150)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1, help="pairs of runs (subprocess, containers)")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument(
        "--no-fair-cpu",
        dest="fair_cpu",
        action="store_false",
        help="run the task containers in Podman's default CPU cgroup (one process's weight)",
    )
    parser.add_argument("--split", action="store_true", help="one task container's cost, phase by phase")
    parser.add_argument("--tags", nargs="+", help="--split: image tags to compare (default: this checkout's)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    results = split(args) if args.split else bench(args)
    print(json.dumps(results, indent=1))
    print(split_table(results) if args.split else table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
