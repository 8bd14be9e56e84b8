"""Benchmark: wall time of each step and of the whole local loop, and peak memory.

Runs the ``training`` pipeline under kfp.local on the full bundled data set with the
suite's default recipe (what ``make quickstart`` runs; ``--reference``: the guide's chapter
2.5 settings) and prints JSON and a table.
Reference on this kind of 2-core machine: the original scripts' ``dvc repro`` takes 42 s
(prepare 7 s, train 28 s, evaluate 12 s).

    .venv/bin/python -m benchmarks.bench_pipeline [--repeat N] [--reference | --baseline]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from planets_mlops.app.quickstart import (
    BASELINE,
    CHAPTER_2_5,
    DATA_PATH,
    SUITE,
    ensure_data_repo,
)

REFERENCE_SECONDS = {"whole": 42.0, "prepare-dataset": 7.0, "train-model": 28.0, "evaluate-model": 12.0}


def main() -> int:
    parser = argparse.ArgumentParser(
        allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--baseline", action="store_true")
    parser.add_argument("--reference", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from planets_mlops.app.local import run_local
    from planets_mlops.pipelines.training import training

    work = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    repo_started = time.monotonic()
    repo = ensure_data_repo(work)
    repo_seconds = time.monotonic() - repo_started
    params = BASELINE if args.baseline else CHAPTER_2_5 if args.reference else SUITE
    runs = []
    for _ in range(args.repeat):
        run = run_local(
            training,
            work / "root",
            log_file=work / "run.log",
            data_repo_url=str(repo),
            data_rev="main",
            data_path=DATA_PATH,
            **params,
        )
        runs.append(
            {
                "whole": run.seconds,
                **{name: task.seconds for name, task in run.tasks.items()},
                "val_acc": run.metadata("evaluate-model", "metrics")["val_acc"],
            }
        )
    # Each task is its own process: the largest child is the peak of the run.
    peak_child_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    peak_self_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    steps = ["pull-data", "prepare-dataset", "train-model", "evaluate-model", "whole"]
    result = {
        "settings": "baseline" if args.baseline else "chapter 2.5" if args.reference else "suite",
        "repeat": args.repeat,
        "data_repo_build_seconds": round(repo_seconds, 2),
        "median_seconds": {s: round(statistics.median(r[s] for r in runs), 2) for s in steps},
        "reference_seconds": REFERENCE_SECONDS,
        "val_acc": [r["val_acc"] for r in runs],
        "peak_rss_mb": {
            "largest_task_process": round(peak_child_mb, 1),
            "orchestrator": round(peak_self_mb, 1),
        },
        "cpus": os.cpu_count(),
    }
    print(json.dumps(result, indent=1))
    print(f"\n{'step':<18}{'seconds':>10}{'reference':>12}")
    for step in steps:
        ref = REFERENCE_SECONDS.get(step)
        print(f"{step:<18}{result['median_seconds'][step]:>10.2f}{(f'{ref:.0f}' if ref else '-'):>12}")
    print(f"peak RSS: largest task {peak_child_mb:.0f} MB, orchestrator {peak_self_mb:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
