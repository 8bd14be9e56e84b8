"""Compile every pipeline (or one) to KFP IR YAML.

The one command-line entry point is ``planets-mlops compile`` (also ``make compile``), which
calls :func:`compile_pipeline` with the GPU options and also writes the component YAML.
"""

from __future__ import annotations

import inspect
from pathlib import Path

from kfp import compiler

from planets_mlops.knobs import MultiWorkerParams
from planets_mlops.pipelines.platform import GKE, ClusterOptions, GpuOptions

DEFAULT_OUT = Path("build/pipelines")


def compile_pipeline(
    name: str,
    out_dir: Path = DEFAULT_OUT,
    gpu: GpuOptions | None = None,
    cluster: ClusterOptions | None = None,
    multiworker: MultiWorkerParams | None = None,
) -> Path:
    """Compile pipeline ``name`` to ``out_dir/<name>.yaml``.

    Args:
        name: A pipeline of :data:`planets_mlops.pipelines.BUILDERS`.
        out_dir: Folder for the YAML file (made if missing).
        gpu: where the training task runs; the defaults of :class:`GpuOptions` when None.
        cluster: retries and bucket credentials; :data:`~planets_mlops.pipelines.platform.GKE`
            (Workload Identity, retries) when None, ``KIND`` for kind's key Secrets.
        multiworker: training on several nodes (``--train-nodes``) in the pipelines that
            train; None: one node. A pipeline that trains nothing (monitoring) is unchanged.

    Raises:
        KeyError: ``name`` is not a pipeline of the suite (the message lists them).
    """
    from planets_mlops.pipelines import BUILDERS

    if name not in BUILDERS:
        raise KeyError(f"Unknown pipeline {name!r}; choose one of {sorted(BUILDERS)}.")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.yaml"
    builder = BUILDERS[name]
    options = {}
    if multiworker is not None and "multiworker" in inspect.signature(builder).parameters:
        options["multiworker"] = multiworker
    compiler.Compiler().compile(builder(gpu or GpuOptions(), cluster or GKE, **options), str(path))
    return path


def compile_all(
    out_dir: Path = DEFAULT_OUT,
    gpu: GpuOptions | None = None,
    cluster: ClusterOptions | None = None,
    multiworker: MultiWorkerParams | None = None,
) -> list[Path]:
    """Compile every pipeline to ``out_dir``; returns the written files."""
    from planets_mlops.pipelines import BUILDERS

    return [compile_pipeline(name, out_dir, gpu, cluster, multiworker) for name in BUILDERS]
