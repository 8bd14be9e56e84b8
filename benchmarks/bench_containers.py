"""Benchmark: the ``training`` pipeline in its images (DockerRunner on Podman) beside the same
run under the subprocess runner, side by side in one run. Not a test.

Both runs read the same inputs the same way: a git + DVC data repository with a subset of
the bundled data set, served by ``git daemon`` on 127.0.0.1, its DVC remote on the GCS
emulator. Only the runner differs: ``SubprocessRunner`` runs each task as a process of this
environment; ``DockerRunner`` runs each in the image the compiled IR names (``make images``
first), as the image's non-root user. The runs alternate (subprocess, containers, ...) so
that machine load hits both alike. Prints per-task and whole wall times.

Usage::

    .venv/bin/python -m benchmarks.bench_containers                 # 10 classes x 30 images, 2 epochs
    .venv/bin/python -m benchmarks.bench_containers --per-class 150 --epochs 10 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import tempfile
from pathlib import Path
from typing import Any

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


def bench(args: argparse.Namespace) -> dict[str, Any]:
    from planets_mlops.app.containers import docker_runner, git_daemon, podman_service, shared_pipeline_root
    from planets_mlops.app.local import run_local
    from planets_mlops.components.images import RUNTIME_IMAGE, TRAINING_GPU_IMAGE
    from planets_mlops.datarepo import create_data_repo
    from planets_mlops.pipelines.training import training

    work = Path(tempfile.mkdtemp(prefix="bench-containers-"))
    emulator = start_emulator()
    os.environ["STORAGE_EMULATOR_HOST"] = emulator.url
    results: dict[str, Any] = {
        "images": [RUNTIME_IMAGE, TRAINING_GPU_IMAGE],
        "classes": len(CLASSES),
        "per_class": args.per_class,
        "epochs": args.epochs,
        "cpus": os.cpu_count(),
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
                    runner = docker_runner() if name == "containers" else None
                    log.info("run %d: %s", repeat + 1, name)
                    run = run_local(
                        training, root, log_file=work / f"{name}-{repeat}.log", runner=runner, **arguments
                    )
                    results["runs"][name].append(
                        {
                            "whole_s": round(run.seconds, 1),
                            "tasks_s": {t: round(r.seconds, 1) for t, r in run.tasks.items()},
                            metric_names.VAL_ACCURACY: run.metadata("evaluate-model", "metrics").get(
                                metric_names.VAL_ACCURACY
                            ),
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
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-class", type=int, default=30, help="images per class (of 150)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1, help="pairs of runs (subprocess, containers)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    results = bench(args)
    print(json.dumps(results, indent=1))
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
