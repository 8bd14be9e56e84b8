"""Compile every pipeline (or one) to KFP IR YAML: ``python -m pipelines.compile [name...]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kfp import compiler
from planets_mlops.pipelines.platform import GpuOptions

DEFAULT_OUT = Path("build/pipelines")


def compile_pipeline(name: str, out_dir: Path = DEFAULT_OUT, gpu: GpuOptions | None = None) -> Path:
    """Compile pipeline ``name`` to ``out_dir/<name>.yaml``.

    Args:
        gpu: where the training task runs; the defaults of :class:`GpuOptions` when None.

    Raises:
        KeyError: ``name`` is not a pipeline of the suite (the message lists them).
    """
    from planets_mlops.pipelines import BUILDERS

    if name not in BUILDERS:
        raise KeyError(f"Unknown pipeline {name!r}; choose one of {sorted(BUILDERS)}.")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.yaml"
    compiler.Compiler().compile(BUILDERS[name](gpu or GpuOptions()), str(path))
    return path


def compile_all(out_dir: Path = DEFAULT_OUT, gpu: GpuOptions | None = None) -> list[Path]:
    """Compile every pipeline; returns the written files."""
    from planets_mlops.pipelines import BUILDERS

    return [compile_pipeline(name, out_dir, gpu) for name in BUILDERS]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", help="pipelines to compile (default: all)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    try:
        paths = [compile_pipeline(n, args.out) for n in args.names] if args.names else compile_all(args.out)
    except KeyError as exc:
        print(exc.args[0], file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
