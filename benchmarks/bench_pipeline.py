"""Benchmark: the local training loop beside the reference experiment's scripts, in one run.

Side A is the ``training`` pipeline under kfp.local on the full bundled data set with the
suite's default recipe (what ``make quickstart`` runs; ``--reference``: the guide's chapter
2.5 settings; ``--baseline``: its baseline), one whole process per run. Side B is the
reference experiment's own three scripts (prepare, train, evaluate with chapter 2.5
settings, ``scripts/reference_experiment``), one process each, as ``dvc repro`` runs them.
The two sides alternate (A B, B A, ...) so that both see the same load; each figure is the
median over the pairs: wall seconds, CPU seconds (user + system of the process tree) and
peak RSS (the largest single process of the tree, from ``wait4``). Both sides run with the
same bytecode cache (``PYTHONPYCACHEPREFIX``, warmed before the first pair).

    .venv/bin/python -m benchmarks.bench_pipeline [--pairs N] [--reference | --baseline] [--epochs N]

``--epochs N`` trains side A for N epochs instead of its recipe's (side B keeps the chapter
2.5 settings): with ``--epochs 1`` it shows what the loop costs besides the epochs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from planets_mlops import metric_names

ROOT = Path(__file__).resolve().parents[1]

REFERENCE_SCRIPTS = ROOT / "scripts" / "reference_experiment"
SUITE_STEPS = ["pull-data", "prepare-dataset", "train-model", "evaluate-model"]


def _env() -> dict[str, str]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONDONTWRITEBYTECODE="")
    env.setdefault("PYTHONPYCACHEPREFIX", str(ROOT / "build" / "pycache"))
    return env


def _timed(command: list[str], cwd: Path, log: Path) -> dict[str, float]:
    """Run ``command`` to completion: wall and CPU seconds and peak RSS of its process tree."""
    with open(log, "a") as out:
        started = time.monotonic()
        process = subprocess.Popen(command, cwd=cwd, env=_env(), stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.monotonic() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise SystemExit(f"{' '.join(command)} failed with {process.returncode}; see {log}")
    return {
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "peak_mb": usage.ru_maxrss / 1024,
    }


def run_suite(work: Path, repo: Path, settings: str, log: Path, epochs: int | None = None) -> dict:
    """One local training run in its own process; its per-step seconds and val_accuracy."""
    out = work / "suite.json"
    figures = _timed(
        [
            sys.executable,
            "-m",
            "benchmarks.bench_pipeline",
            "--one-suite",
            str(work / "root"),
            str(repo),
            settings,
            str(out),
            *([f"--epochs={epochs}"] if epochs else []),
        ],
        ROOT,
        log,
    )
    return {**figures, **json.loads(out.read_text())}


def run_reference(work: Path, log: Path) -> dict:
    """The reference's prepare, train and evaluate, one process each, in a fresh folder."""
    folder = work / f"reference-{time.monotonic_ns()}"
    folder.mkdir()
    # The chapter 2.5 settings (the root params.yaml holds the suite's defaults).
    shutil.copy(ROOT / "params.reference.yaml", folder / "params.yaml")
    steps = {
        "prepare": ["prepare.py", str(ROOT / "data" / "planets" / "raw"), "data/prepared"],
        "train": ["train.py", "data/prepared", "model"],
        "evaluate": ["evaluate.py", "model", "data/prepared"],
    }
    figures = {
        name: _timed([sys.executable, str(REFERENCE_SCRIPTS / script), *args], folder, log)
        for name, (script, *args) in steps.items()
    }
    # The reference's own metrics.json names it val_acc.
    scores = metric_names.current(json.loads((folder / "evaluation" / "metrics.json").read_text()))
    shutil.rmtree(folder)
    return {
        "wall": sum(f["wall"] for f in figures.values()),
        "cpu": sum(f["cpu"] for f in figures.values()),
        "peak_mb": max(f["peak_mb"] for f in figures.values()),
        "steps": {name: round(f["wall"], 2) for name, f in figures.items()},
        metric_names.VAL_ACCURACY: scores[metric_names.VAL_ACCURACY],
    }


def one_suite(root: Path, repo: Path, settings: str, out: Path, epochs: int | None = None) -> None:
    """The child process of :func:`run_suite`: run the pipeline once, write its figures."""
    from planets_mlops.app.local import run_local
    from planets_mlops.app.quickstart import BASELINE, CHAPTER_2_5, DATA_PATH, SUITE
    from planets_mlops.pipelines.training import training

    params = {"suite": SUITE, "chapter 2.5": CHAPTER_2_5, "baseline": BASELINE}[settings]
    if epochs:
        params = {**params, "train_epochs": epochs}
    run = run_local(
        training,
        root,
        log_file=root.parent / "run.log",
        data_repo_url=str(repo),
        data_rev="main",
        data_path=DATA_PATH,
        **params,
    )
    out.write_text(
        json.dumps(
            {
                "pipeline": run.seconds,
                "steps": {name: round(task.seconds, 2) for name, task in run.tasks.items()},
                metric_names.VAL_ACCURACY: run.metadata("evaluate-model", "metrics")[
                    metric_names.VAL_ACCURACY
                ],
            }
        )
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=int, default=3, help="alternating pairs (default 3)")
    parser.add_argument("--baseline", action="store_true")
    parser.add_argument("--reference", action="store_true")
    parser.add_argument("--epochs", type=int, help="side A trains this many epochs instead of its recipe's")
    parser.add_argument(
        "--one-suite", nargs=4, metavar=("ROOT", "REPO", "SETTINGS", "OUT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.one_suite:
        root, repo, settings, out = args.one_suite
        one_suite(Path(root), Path(repo), settings, Path(out), args.epochs)
        return 0
    from planets_mlops.app.quickstart import ensure_data_repo

    settings = "baseline" if args.baseline else "chapter 2.5" if args.reference else "suite"
    work = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    log = work / "bench.log"
    repo = ensure_data_repo(work)
    # Warm the bytecode cache for both sides (the first pair would otherwise pay for it).
    warm = "import tensorflow, matplotlib.pyplot, yaml, kfp, onnxruntime, tf2onnx, planets_mlops.app.local"
    _timed([sys.executable, "-c", warm], ROOT, log)
    sides = {
        "suite": lambda: run_suite(work, repo, settings, log, args.epochs),
        "reference": lambda: run_reference(work, log),
    }
    runs: dict[str, list[dict]] = {"suite": [], "reference": []}
    for pair in range(args.pairs):
        for side in ("suite", "reference") if pair % 2 == 0 else ("reference", "suite"):
            runs[side].append(sides[side]())
            figures = runs[side][-1]
            print(
                f"pair {pair + 1} {side:<9} wall {figures['wall']:6.1f} s  cpu {figures['cpu']:6.1f} s  "
                f"peak {figures['peak_mb']:6.0f} MB  steps {figures['steps']}",
                flush=True,
            )

    def median(side: str, key: str) -> float:
        return round(statistics.median(r[key] for r in runs[side]), 2)

    result = {
        "settings": settings,
        "epochs": args.epochs,
        "pairs": args.pairs,
        "cpus": os.cpu_count(),
        **{
            side: {
                "median_wall_s": median(side, "wall"),
                "median_cpu_s": median(side, "cpu"),
                "median_peak_rss_mb": median(side, "peak_mb"),
                "median_step_s": {
                    step: round(statistics.median(r["steps"][step] for r in runs[side]), 2)
                    for step in runs[side][0]["steps"]
                },
                metric_names.VAL_ACCURACY: [round(r[metric_names.VAL_ACCURACY], 4) for r in runs[side]],
            }
            for side in runs
        },
    }
    result["ratio"] = {
        key: round(result["suite"][key] / result["reference"][key], 3)
        for key in ("median_wall_s", "median_cpu_s", "median_peak_rss_mb")
    }
    print(json.dumps(result, indent=1))
    print(f"\n{'':<22}{'suite':>10}{'reference':>12}{'ratio':>8}")
    for key, label in (
        ("median_wall_s", "wall s"),
        ("median_cpu_s", "CPU s"),
        ("median_peak_rss_mb", "peak RSS MB"),
    ):
        print(
            f"{label:<22}{result['suite'][key]:>10.2f}{result['reference'][key]:>12.2f}{result['ratio'][key]:>8.3f}"
        )
    trained = f", {args.epochs} epoch(s)" if args.epochs else ""
    print(f"(median of {args.pairs} alternating pairs; suite settings: {settings}{trained}; log {log})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
