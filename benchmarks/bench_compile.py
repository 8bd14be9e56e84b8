#!/usr/bin/env python
"""Time ``compile`` of every pipeline, in-process and as a CLI subprocess.

Usage: ``.venv/bin/python -m benchmarks.bench_compile [--repeat 3] [--target 3.0]``

In-process: the first import of ``pipelines`` (kfp, components) is timed once, then each
pipeline's compile is timed ``--repeat`` times (best and median kept). Subprocess: the
whole ``planets-mlops compile`` (interpreter start, imports, every pipeline and
component) is timed ``--repeat`` times, which is what a CI job or a developer pays.
Prints a JSON document, then a table; exits 1 when the median CLI time misses the target.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _stats(samples: list[float]) -> dict[str, float]:
    return {
        "best_s": round(min(samples), 3),
        "median_s": round(statistics.median(samples), 3),
        "runs": len(samples),
    }


def bench_in_process(repeat: int, out_dir: Path) -> dict[str, object]:
    start = time.perf_counter()
    from planets_mlops.app import cli

    source = cli.pipeline_source()
    import_s = time.perf_counter() - start
    per_pipeline = {}
    for name in source.names:
        samples = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            source.compile(name, out_dir / "pipelines")
            samples.append(time.perf_counter() - t0)
        per_pipeline[name] = _stats(samples)
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        cli.compile_components(out_dir / "components")
        samples.append(time.perf_counter() - t0)
    return {
        "import_s": round(import_s, 3),
        "pipelines": per_pipeline,
        "components": _stats(samples),
    }


def bench_cli(repeat: int, out_dir: Path) -> dict[str, float]:
    exe = Path(sys.executable).with_name("planets-mlops")
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "planets_mlops.app.cli"]
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(
            [*command, "compile", "--out-dir", str(out_dir)],
            cwd=ROOT,
            check=True,
            capture_output=True,
            timeout=120,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        samples.append(time.perf_counter() - t0)
    return _stats(samples)


def main() -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--target", type=float, default=3.0, help="seconds (CLI median)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cli_stats = bench_cli(args.repeat, Path(tmp) / "cli")
        in_process = bench_in_process(args.repeat, Path(tmp) / "inproc")
    result = {
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "in_process": in_process,
        "cli_subprocess": cli_stats,
        "target_s": args.target,
        "meets_target": cli_stats["median_s"] < args.target,
    }
    print(json.dumps(result, indent=2))
    rows = [("what", "best s", "median s")]
    rows.append(("import pipelines (once)", f"{in_process['import_s']:.3f}", ""))
    for name, s in in_process["pipelines"].items():
        rows.append((f"compile {name}", f"{s['best_s']:.3f}", f"{s['median_s']:.3f}"))
    comp = in_process["components"]
    rows.append(("compile all components", f"{comp['best_s']:.3f}", f"{comp['median_s']:.3f}"))
    rows.append(
        (
            "planets-mlops compile (CLI)",
            f"{cli_stats['best_s']:.3f}",
            f"{cli_stats['median_s']:.3f}",
        )
    )
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    print()
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    print(f"\ntarget: CLI median < {args.target:g} s -> {'OK' if result['meets_target'] else 'MISSED'}")
    return 0 if result["meets_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
