"""Benchmark of the drift check: false alarms on in-distribution windows, images needed per shift.

Trains the suite's recipe on the bundled data set (or reuses ``--workdir``'s model),
profiles its validation images as the reference, then runs the service's path (preprocess,
ONNX model, guard, records) on the bundled ``extra`` images, which the model never saw:

- in-distribution: ``--windows`` windows of ``--window-size`` extra images of every class
  (drawn without replacement within a window; the windows overlap, the set has 500 images);
- shifts: the extra images darkened, rotated, or of three classes only (a class mix).

For each shift and window size, ``--repeats`` windows are drawn and checked; the figure is
the smallest size at which every window was called ``drift``. Each check is printed beside
two references computed on the same p-values: Evidently's defaults (p < 0.05 per column,
dataset drift when half the columns drift) and no correction (p < 0.05, any column).

    .venv/bin/python -m benchmarks.bench_drift                 # about 5 min on 2 cores
    .venv/bin/python -m benchmarks.bench_drift --repeats 3 --sizes 20,50,100
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RAW = ROOT / "data" / "planets" / "raw"
EXTRA = ROOT / "data" / "planets" / "extra"
MIX_CLASSES = ("Earth", "Jupiter", "Moon")


def _model(workdir: Path, epochs: int) -> tuple[Path, Path]:
    from planets_mlops.knobs import PrepareParams, TrainParams
    from planets_mlops.prepare import prepare_dataset
    from planets_mlops.train import train_model

    prepared, model = workdir / "prepared", workdir / "model"
    if not (model / "model.onnx").is_file():
        started = time.monotonic()
        prepare_dataset(RAW, prepared, PrepareParams())
        train_model(prepared, model, TrainParams(epochs=epochs))
        print(f"trained the suite's recipe in {time.monotonic() - started:.0f} s -> {model}")
    return prepared, model


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=ROOT / "build" / "bench-drift")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--windows", type=int, default=10)
    parser.add_argument("--window-size", type=int, default=100)
    parser.add_argument("--sizes", default="3,5,10,20,30,50,100")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    from planets_mlops.app.dev import traffic
    from planets_mlops.knobs import DriftParams
    from planets_mlops.monitoring import drift
    from planets_mlops.monitoring.records import Window
    from planets_mlops.monitoring.reference import has_reference, load_reference
    from planets_mlops.prepared import load_manifest

    prepared, model = _model(args.workdir, args.epochs)
    runner = traffic.ModelRunner(model)
    files = load_manifest(prepared)["splits"]["validation"]["files"]
    if has_reference(model):  # written by train_model
        reference = load_reference(model)
    else:
        reference = traffic.model_reference(runner, [(RAW / name).read_bytes() for name in files])
    extra = traffic.extra_images(EXTRA)
    mix = {p for p in traffic.extra_images(EXTRA, MIX_CLASSES)}
    made = time.monotonic()
    pools = {
        shift: traffic.model_records(
            runner, [traffic.shift_image(p.read_bytes(), shift) for p in extra], "bench"
        )
        for shift in traffic.SHIFTS
    }
    pools["class mix"] = [r for p, r in zip(extra, pools["none"]) if p in mix]
    print(f"reference: {reference.count} validation images; records of {len(extra)} extra images x "
          f"{len(traffic.SHIFTS)} shifts in {time.monotonic() - made:.1f} s")  # fmt: skip
    rng = np.random.default_rng(args.seed)
    params = DriftParams()
    seconds: list[float] = []

    def check(pool: list, size: int, min_records: int) -> tuple[str, bool, bool]:
        chosen = [pool[i] for i in rng.choice(len(pool), size=size, replace=False)]
        window = Window(records=chosen, objects=1, skipped={}, truncated=False)
        started = time.monotonic()
        result = drift.detect_drift(reference, window, dataclasses.replace(params, min_records=min_records))
        seconds.append(time.monotonic() - started)
        p = [c.p_value for c in result.columns]
        evidently_default = bool(p) and bool(np.mean(np.array(p) < 0.05) >= 0.5)
        uncorrected = bool(p) and min(p) < 0.05
        return result.verdict, evidently_default, uncorrected

    print(f"\n== false alarms: {args.windows} in-distribution windows of {args.window_size} extra images")
    alarms = [check(pools["none"], args.window_size, params.min_records) for _ in range(args.windows)]
    figures: dict = {
        "false_alarms": {
            "suite (Bonferroni alpha 0.01, one column)": int(sum(a[0] == drift.DRIFT for a in alarms)),
            "Evidently defaults (p<0.05, half the columns)": int(sum(a[1] for a in alarms)),
            "uncorrected (p<0.05, any column)": int(sum(a[2] for a in alarms)),
            "windows": args.windows,
        }
    }
    for name, value in figures["false_alarms"].items():
        print(f"  {name:48s} {value}")

    sizes = [int(s) for s in args.sizes.split(",")]
    print(
        f"\n== false alarms without min_records: share of {args.repeats} in-distribution windows called drift"
    )
    small_alarms = {}
    for size in sizes:
        rate = float(np.mean([check(pools["none"], size, 1)[0] == drift.DRIFT for _ in range(args.repeats)]))
        small_alarms[str(size)] = rate
        print(f"  size {size:4d}: {rate:.0%}")
    figures["false_alarm_rate_without_min_records"] = small_alarms
    print(f"\n== detection: share of {args.repeats} windows called drift, by window size")
    print(
        f"  {'shift':10s} {'size':>5s} {'suite':>7s} {'suite, no minimum':>18s} {'Evidently defaults':>19s}"
    )
    needed: dict = {}
    for shift, pool in (
        ("darken", pools["darken"]),
        ("rotate", pools["rotate"]),
        ("class mix", pools["class mix"]),
    ):
        needed[shift] = {"suite": None, "suite without min_records": None, "Evidently defaults": None}
        for size in sizes:
            if size > len(pool):
                continue
            rows = [check(pool, size, params.min_records) for _ in range(args.repeats)]
            bare = [check(pool, size, 1) for _ in range(args.repeats)]
            rates = (
                np.mean([r[0] == drift.DRIFT for r in rows]),
                np.mean([r[0] == drift.DRIFT for r in bare]),
                np.mean([r[1] for r in bare]),
            )
            print(f"  {shift:10s} {size:5d} {rates[0]:7.0%} {rates[1]:18.0%} {rates[2]:19.0%}")
            for key, rate in zip(needed[shift], rates):
                if rate == 1.0 and needed[shift][key] is None:
                    needed[shift][key] = int(size)
    figures["images_needed"] = needed
    figures["seconds_per_check_median"] = float(np.median(seconds))
    print("\n== images needed to detect every window (None: not within the sizes tried)")
    for shift, row in needed.items():
        print(f"  {shift:10s} " + "  ".join(f"{k}: {v}" for k, v in row.items()))
    median = figures["seconds_per_check_median"]
    print(f"\nmedian time of one check (Evidently, {len(seconds)} checks): {median:.2f} s")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
