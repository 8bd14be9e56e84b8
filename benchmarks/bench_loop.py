"""Benchmark: one turn of the loop that learns, per seed, measured over HTTP.

For each seed: a fresh git + DVC data repository of ``data/planets/raw``, the ``training``
pipeline with the suite's recipe at that seed (prepare and train), then one turn of
:func:`planets_mlops.app.production_loop.run_loop`: production traffic changes (default
red and blue swapped), the monitoring pipeline finds the drift, its alert pushes the
service's inbox to Label Studio, the tasks are labelled through the API from the true
classes, the retraining pipeline trains and the gate decides, and the served accuracy of
the test images (extra images neither model trained on) is measured before and after,
changed and unchanged, with 95 % intervals (Wilson for each accuracy, paired bootstrap
and McNemar for the gain).

Target: the changed-traffic accuracy gains at least 30 points at every seed; unchanged
accuracy not worse beyond noise (McNemar p >= 0.05 or no loss).

    nice -n 10 .venv/bin/python -m benchmarks.bench_loop [--seeds 5241,1,2] [--shift swap_rb] \\
        [--max-tasks 0] [--json F]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from planets_mlops import metric_names

TARGET_GAIN = 0.30


def one_seed(seed: int, shift: str, work: Path, epochs: int | None, max_tasks: int) -> dict[str, Any]:
    """Train at ``seed``, run one turn of the loop, return its figures and stage times."""
    from planets_mlops.app.local import run_local
    from planets_mlops.app.production_loop import run_loop
    from planets_mlops.app.quickstart import DATA_PATH, SUITE, ensure_data_repo
    from planets_mlops.pipelines.training import training

    repo = ensure_data_repo(work)
    params = {**SUITE, "prepare_seed": seed, "train_seed": seed}
    if epochs:
        params["train_epochs"] = epochs
    started = time.monotonic()
    run = run_local(
        training,
        work / "pipeline-root",
        log_file=work / "logs" / "training.log",
        data_repo_url=str(repo),
        data_rev="main",
        data_path=DATA_PATH,
        **params,
    )
    train_s = time.monotonic() - started
    result = run_loop(
        work,
        repo,
        run.artifact("train-model", "model"),
        run.artifact("package-model", "bento"),
        params,
        shift=shift,
        seed=seed,
        data_path=DATA_PATH,
        max_tasks=max_tasks,
    )
    figures = result.summary()
    figures["stages_s"] = {"train": round(train_s, 1), **figures["stages_s"]}
    return figures


def fmt(acc: dict[str, Any]) -> str:
    """``0.290 [0.23, 0.36]``."""
    low, high = acc["interval"]
    return f"{acc['accuracy']:.3f} [{low:.2f}, {high:.2f}]"


def print_table(rows: list[dict[str, Any]]) -> None:
    """One line per seed: changed and unchanged before/after, gain, labels, stage times."""
    print(
        f"\n{'seed':>5} | {'changed before':<20} {'changed after':<20} {'gain [95 % CI]':<22} | "
        f"{'unchanged before':<20} {'unchanged after':<20} {'delta (McNemar p)':<18} | "
        f"{'inbox':>5} {'labelled':>8} | promoted | stage times (s)"
    )
    for row in rows:
        changed, unchanged = row["changed"], row["unchanged"]
        after_c = fmt(changed["after"]) if "after" in changed else "-"
        after_u = fmt(unchanged["after"]) if "after" in unchanged else "-"
        gain = delta = "-"
        if "paired" in changed:
            low, high = changed["paired"]["interval"]
            gain = f"{changed['paired']['gain']:+.3f} [{low:+.2f}, {high:+.2f}]"
            delta = f"{unchanged['paired']['gain']:+.3f} (p {unchanged['paired']['p_value']:.2f})"
        stages = " ".join(f"{k} {v:.0f}" for k, v in row["stages_s"].items())
        print(
            f"{row['seed']:>5} | {fmt(changed['before']):<20} {after_c:<20} {gain:<22} | "
            f"{fmt(unchanged['before']):<20} {after_u:<20} {delta:<18} | "
            f"{row['inbox_items']:>5} {row['labelled']:>8} | {str(row['promoted']):<8} | {stages}"
        )
    for row in rows:
        gate = metric_names.current(row.get("gate") or {})
        images = int(gate.get(metric_names.GATE_IMAGES) or 0)
        if metric_names.VAL_ACCURACY in gate:
            production = gate.get(metric_names.PRODUCTION_VAL_ACCURACY, float("nan"))
            decision = "promoted" if row["promoted"] else "KEPT production"
            print(
                f"seed {row['seed']}: gate on {images} images, candidate "
                f"{gate[metric_names.VAL_ACCURACY]:.4f} against production {production:.4f}, {decision}: "
                + " ".join(gate.get("reasons", []))
            )
    gains = [r["changed"]["paired"]["gain"] for r in rows if "paired" in r["changed"]]
    worse = [r["seed"] for r in rows if r["unchanged"].get("paired", {}).get("worse_beyond_noise")]
    met = len(gains) == len(rows) and min(gains) >= TARGET_GAIN and not worse
    print(
        f"\nchanged-traffic gain >= {TARGET_GAIN:.2f} at every seed and unchanged not worse beyond noise: "
        f"{'MET' if met else 'NOT MET'} (gains {', '.join(f'{g:+.3f}' for g in gains) or 'none'}; "
        f"unchanged worse beyond noise at seeds {worse or 'none'})"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; prints the table and optionally writes JSON."""
    parser = argparse.ArgumentParser(
        allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", default="5241,1,2", help="comma-separated seeds (default 5241,1,2)")
    parser.add_argument("--shift", default="swap_rb", help="the production change (default swap_rb)")
    parser.add_argument("--max-tasks", type=int, default=0, help="inbox images labelled at most (0: all)")
    parser.add_argument("--epochs", type=int, help="override the training epochs (default the suite's)")
    parser.add_argument(
        "--workdir", type=Path, help="keep each seed's files here (default: a temporary folder)"
    )
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        print(f"\n== seed {seed}, production change {args.shift}")
        with tempfile.TemporaryDirectory(prefix=f"bench-loop-{seed}-") as tmp:
            work = (args.workdir / f"seed-{seed}") if args.workdir else Path(tmp)
            work.mkdir(parents=True, exist_ok=True)
            rows.append(one_seed(seed, args.shift, work.resolve(), args.epochs, args.max_tasks))
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
