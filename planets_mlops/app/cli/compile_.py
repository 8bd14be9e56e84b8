"""``planets-mlops compile``: pipelines and components to IR YAML, no cluster needed."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from planets_mlops.app import params as pp
from planets_mlops.app.cli.options import Parents
from planets_mlops.app.cli.output import EXIT_OK, emit, say
from planets_mlops.app.cli.source import compile_components
from planets_mlops.errors import InvalidParameterError
from planets_mlops.knobs import MultiWorkerParams, describe, knob_fields

# --train-nodes, --train-queue, ...: one flag per knob of MultiWorkerParams, its help the
# knob's description (declared once, in planets_mlops.knobs).
MULTIWORKER_FLAGS = {name: f"--train-{name.replace('_', '-')}" for name in knob_fields(MultiWorkerParams)}


def register(sub: Any, parents: Parents) -> None:
    """Add the ``compile`` command to the subparsers ``sub``."""
    p = sub.add_parser(
        "compile", parents=[parents.common], help="compile pipelines and components to IR YAML"
    )
    p.add_argument("names", nargs="*", metavar="PIPELINE", help="default: all")
    p.add_argument("--no-components", action="store_true", help="skip build/components/*.yaml")
    p.add_argument(
        "--gpu-count",
        type=int,
        help="GPUs for the training task (0: CPU only; default 1; 2-8: one replica per GPU of one node)",
    )
    p.add_argument("--gpu-node-pool", help="node pool of GPU nodes (default gpu-pool)")
    p.add_argument("--gpu-node-label", help="node label naming pools (default cloud.google.com/gke-nodepool)")
    p.add_argument("--shm-size", help="size of the memory-backed /dev/shm of the training task (default 2Gi)")
    p.add_argument(
        "--cpu",
        help="CPU request = limit of the training task (default 4 on a GPU node, 3 with --gpu-count 0)",
    )
    p.add_argument(
        "--memory",
        help="memory request = limit of the training task (default 16Gi; 10Gi with --gpu-count 0)",
    )
    for name, flag in MULTIWORKER_FLAGS.items():
        default = getattr(MultiWorkerParams, name)
        p.add_argument(
            flag,
            dest=f"multiworker_{name}",
            metavar=name.split("_")[0].upper(),
            type=type(default),
            help=f"{describe(MultiWorkerParams, name)} (default {default!r}; docs/scaling.md)".replace(
                "%", "%%"
            ),
        )
    p.add_argument("--components-package", default="planets_mlops.components", help=argparse.SUPPRESS)
    p.set_defaults(handler=handle)


def gpu_options(args: argparse.Namespace) -> Any:
    """Compile-time GPU placement from flags; None keeps the pipeline's defaults.

    Raises:
        InvalidParameterError: A negative ``--gpu-count``, or ``--cpu``/``--memory`` that is
            not a Kubernetes quantity.
    """
    given = {
        "count": args.gpu_count,
        "node_pool": args.gpu_node_pool,
        "node_pool_label": args.gpu_node_label,
        "shm_size": args.shm_size,
        "cpu": args.cpu,
        "memory": args.memory,
    }
    given = {k: v for k, v in given.items() if v is not None}
    if not given:
        return None
    from planets_mlops.pipelines.platform import GpuOptions

    if given.get("count", 1) < 0:
        raise InvalidParameterError("--gpu-count", given["count"], "0 (CPU only) or more")
    return GpuOptions(**given)


def multiworker_options(args: argparse.Namespace) -> Any:
    """Training on several nodes from the ``--train-*`` flags; None when none is given.

    Raises:
        InvalidParameterError: A value its knob refuses (``--train-nodes 0`` ...).
    """
    given = {name: getattr(args, f"multiworker_{name}") for name in MULTIWORKER_FLAGS}
    given = {k: v for k, v in given.items() if v is not None}
    if not given:
        return None
    return MultiWorkerParams(**given)


def handle(args: argparse.Namespace) -> int:
    """Compile the named pipelines (default: all), then every component."""
    start = time.monotonic()
    source = args.source_factory()
    names = args.names or source.names
    for name in names:
        source.check(name)
    out = Path(args.out_dir)
    gpu, multiworker = gpu_options(args), multiworker_options(args)
    pipelines = []
    for name in names:
        t0 = time.monotonic()
        pipelines.append(source.compile(name, out / "pipelines", gpu, multiworker))
        say(f"compiled pipeline {name} in {time.monotonic() - t0:.2f} s")
    components: list[Path] = []
    if not args.no_components:
        t0 = time.monotonic()
        components = compile_components(out / "components", args.components_package)
        say(f"compiled {len(components)} component(s) in {time.monotonic() - t0:.2f} s")
    images = named_images(pipelines)
    emit(
        args,
        [str(p) for p in [*pipelines, *components]],
        {
            "pipelines": [str(p) for p in pipelines],
            "components": [str(p) for p in components],
            "images": images,
        },
    )
    if images:
        say(
            f"the compiled pipelines name {len(images)} image(s); build and push them before running "
            "on a cluster (scripts/build_images.sh --push, images/README.md; a step whose image is "
            "missing stays in ImagePullBackOff, docs/troubleshooting.md):"
        )
        for image in images:
            say(f"  {image}")
    say(f"done: {len(names)} pipeline(s) in {time.monotonic() - start:.2f} s")
    return EXIT_OK


def named_images(paths: list[Path]) -> list[str]:
    """Every container image the compiled pipelines at ``paths`` run, sorted.

    The serving image is added when a pipeline deploys: ``deploy_model`` names it at run
    time (``components.images.SERVING_IMAGE``), so the IR does not.
    """
    images: set[str] = set()
    for path in paths:
        spec = pp.read_pipeline_spec(path)
        executors = spec.get("deploymentSpec", {}).get("executors", {})
        images.update(e["container"]["image"] for e in executors.values() if "container" in e)
        if "exec-deploy-model" in executors:
            from planets_mlops.components.images import SERVING_IMAGE

            images.add(SERVING_IMAGE)
    return sorted(images)
