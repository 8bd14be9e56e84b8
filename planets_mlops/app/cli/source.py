"""The pipelines and components the CLI knows, and compiling them."""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from planets_mlops.app import params as pp
from planets_mlops.app.cli.output import say
from planets_mlops.errors import NotFoundError, PlanetsError, did_you_mean

logger = logging.getLogger(__name__)


@dataclass
class PipelineSource:
    """The pipelines the CLI knows, by kebab-case name, and how to compile one.

    ``compile_fn(name, out_dir) -> Path`` is ``pipelines.compile.compile_pipeline`` when
    that module exists; otherwise the function is compiled here with ``kfp.compiler``.
    """

    pipelines: Mapping[str, Callable[..., Any]]
    compile_fn: Callable[..., Path] | None = None

    @property
    def names(self) -> list[str]:
        """The pipeline names, sorted."""
        return sorted(self.pipelines)

    def check(self, name: str) -> None:
        """Fail unless ``name`` is a known pipeline.

        Raises:
            NotFoundError: Unknown name (the message lists the known ones).
        """
        if name not in self.pipelines:
            raise NotFoundError(
                f"Unknown pipeline {name!r}: known pipelines are "
                f"{self.names}.{did_you_mean(name, self.names)} Check the name, or pass a "
                "compiled .yaml file."
            )

    def compile(self, name: str, out_dir: Path, gpu: Any = None, multiworker: Any = None) -> Path:
        """Compile pipeline ``name`` into ``out_dir``; returns the YAML file.

        Args:
            name: A known pipeline name.
            out_dir: Folder for ``<name>.yaml`` (created if missing).
            gpu: Compile-time GPU placement (``GpuOptions``); None keeps the defaults.
            multiworker: Training on several nodes (``MultiWorkerParams``); None: one node.
        """
        self.check(name)
        out_dir.mkdir(parents=True, exist_ok=True)
        if self.compile_fn is not None:
            options = {"multiworker": multiworker} if multiworker is not None else {}
            if gpu is not None:
                return Path(self.compile_fn(name, out_dir, gpu, **options))
            return Path(self.compile_fn(name, out_dir, **options))
        from kfp import compiler

        path = out_dir / f"{name}.yaml"
        compiler.Compiler().compile(self.pipelines[name], str(path))
        return path


def pipeline_source() -> PipelineSource:
    """The project's pipelines: ``pipelines.PIPELINES`` (+ ``pipelines.compile``)."""
    try:
        module = importlib.import_module("planets_mlops.pipelines")
    except ImportError as exc:
        raise PlanetsError(
            f"Cannot import the `pipelines` package: {exc}. Run from the "
            "repository root or install the project."
        ) from exc
    registry = getattr(module, "PIPELINES", None)
    if not isinstance(registry, Mapping):
        raise PlanetsError(
            "pipelines.PIPELINES (name -> @dsl.pipeline function) is missing; no pipeline to work on yet."
        )
    compile_fn = None
    try:
        compile_fn = importlib.import_module("planets_mlops.pipelines.compile").compile_pipeline
    except (ImportError, AttributeError):
        logger.debug("pipelines.compile.compile_pipeline missing; compiling directly")
    return PipelineSource(registry, compile_fn)


def discover_components(package: str = "planets_mlops.components") -> dict[str, Any]:
    """Module-level ``BaseComponent`` objects of every module in ``package``, by name.

    A component re-exported by another module is counted once, where it is defined.

    Raises:
        PlanetsError: A module fails to import, or two modules define the same name.
    """
    from kfp.dsl.base_component import BaseComponent

    pkg = importlib.import_module(package)
    found: dict[str, Any] = {}
    where: dict[str, str] = {}
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        modname = f"{package}.{info.name}"
        try:
            module = importlib.import_module(modname)
        except Exception as exc:
            raise PlanetsError(f"Cannot import {modname}: {exc}") from exc
        for attr, obj in vars(module).items():
            if attr.startswith("_") or not isinstance(obj, BaseComponent):
                continue
            func = getattr(obj, "python_func", None)
            if getattr(func, "__module__", modname) != modname:
                continue
            if attr in found and found[attr] is not obj:
                raise PlanetsError(
                    f"Component name {attr!r} is defined in both {where[attr]} and {modname}; rename one."
                )
            found[attr], where[attr] = obj, modname
    return found


def compile_components(out_dir: Path, package: str = "planets_mlops.components") -> list[Path]:
    """Write each component to ``out_dir/<name>.yaml`` (for ``load_component_from_file``)."""
    from kfp import compiler

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, component in discover_components(package).items():
        path = out_dir / f"{name}.yaml"
        compiler.Compiler().compile(component, str(path))
        paths.append(path)
    return paths


def local_package(args: argparse.Namespace, source_factory: Callable[[], PipelineSource]) -> tuple[str, Path]:
    """``(pipeline name, compiled file)`` for a registry name or a .yaml path."""
    target = args.pipeline
    if target.endswith((".yaml", ".yml")) or "/" in target:
        path = Path(target)
        spec = pp.read_pipeline_spec(path)
        return str(spec.get("pipelineInfo", {}).get("name", path.stem)), path
    source = source_factory()
    source.check(target)
    say(f"compiling {target}")
    return target, source.compile(target, Path(args.out_dir) / "pipelines")
