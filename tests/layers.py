"""The import rules of the suite, read from the source with :mod:`ast` (no imports run).

Layers, highest first; a module may import its own layer and the ones below it only::

    app        planets_mlops.app.*         CLI, KFP client, local runner, quickstart, demos
    pipelines  planets_mlops.pipelines.*   (folder pipelines/)
    components planets_mlops.components.*  (folder components/)
    logic      planets_mlops.*             everything else: the steps' pure logic

On top of the direction: nothing imports a bare ``components`` or ``pipelines`` package,
the logic never imports ``kfp``, and the module top of a component or pipeline module
imports nothing heavy, directly or through a project module it imports at its top.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LAYERS = ("logic", "components", "pipelines", "app")
# Source folder -> the package it installs as.
SOURCE_ROOTS = {
    "planets_mlops": "planets_mlops",
    "components": "planets_mlops.components",
    "pipelines": "planets_mlops.pipelines",
}
# Distributions that must not load when a pipeline is compiled.
HEAVY = frozenset(
    {
        "tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "numpy", "PIL", "matplotlib",
        "dvc", "bentoml", "label_studio_sdk", "google", "kubernetes", "requests", "httpx",
        "mlflow", "evidently", "pandas", "starlette",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Import:
    """One import statement: who imports what, where, and whether at module top."""

    module: str
    target: str
    line: int
    top: bool


@dataclass(frozen=True)
class Violation:
    """A broken rule, worded for a test failure."""

    module: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.module}:{self.line}: {self.message}"


def layer_of(module: str) -> str | None:
    """The layer of a project module, or None for a module outside the project."""
    if module == "planets_mlops" or module.startswith("planets_mlops."):
        for layer in ("app", "pipelines", "components"):
            prefix = f"planets_mlops.{layer}"
            if module == prefix or module.startswith(prefix + "."):
                return layer
        return "logic"
    return None


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Every project module by its installed dotted name."""
    found: dict[str, Path] = {}
    for folder, package in SOURCE_ROOTS.items():
        for path in sorted((root / folder).rglob("*.py")):
            rel = path.relative_to(root / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            found[".".join([package, *parts])] = path
    return found


def _resolve(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(module: str, source: str, is_package: bool = False) -> list[Import]:
    """Every import in ``source``; ``top`` is True outside function bodies."""
    tree = ast.parse(source)
    found: list[Import] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend(Import(module, a.name, child.lineno, top) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                target = _resolve(module, child, is_package)
                found.append(Import(module, target, child.lineno, top))
                # ``from planets_mlops import cli`` imports the submodule planets_mlops.cli.
                found.extend(
                    Import(module, f"{target}.{a.name}", child.lineno, top)
                    for a in child.names
                    if layer_of(target) is not None
                )
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                continue  # typing-only imports never run
            visit(child, inner)

    visit(tree, True)
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def check(graph: Mapping[str, Iterable[Import]]) -> list[Violation]:
    """Every rule broken by the import ``graph`` (module -> its imports)."""
    graph = {m: list(i) for m, i in graph.items()}
    bad: list[Violation] = []
    for module, imports in graph.items():
        own = layer_of(module)
        for imp in imports:
            head = imp.target.split(".")[0]
            if head in ("components", "pipelines"):
                bad.append(
                    Violation(
                        module, imp.line, f"imports bare {imp.target!r}: use planets_mlops.{imp.target}"
                    )
                )
                continue
            target_layer = layer_of(imp.target)
            if own and target_layer and LAYERS.index(target_layer) > LAYERS.index(own):
                bad.append(
                    Violation(module, imp.line, f"{own} imports {target_layer} ({imp.target}): arrows point app -> "  # noqa: E501
                              "pipelines -> components -> logic")
                )  # fmt: skip
            if own == "logic" and head == "kfp":
                bad.append(
                    Violation(
                        module, imp.line, f"logic imports {imp.target}: only components and above use kfp"
                    )
                )
        if own in ("components", "pipelines"):
            for imp, chain in _heavy_at_top(module, graph):
                via = " -> ".join(chain)
                bad.append(
                    Violation(
                        module, imp.line, f"heavy import at module top: {via}; import it inside the function"
                    )
                )
    return bad


def _heavy_at_top(module: str, graph: Mapping[str, list[Import]]) -> Iterator[tuple[Import, list[str]]]:
    """Heavy modules reached from ``module``'s top-level imports (through project modules)."""
    for imp in graph.get(module, []):
        if not imp.top:
            continue
        seen: set[str] = set()
        stack = [[imp.target]]
        while stack:
            chain = stack.pop()
            target = chain[-1]
            if target.split(".")[0] in HEAVY:
                yield imp, [module, *chain]
                break
            if target in seen:
                continue
            seen.add(target)
            parts = target.split(".")
            parents = [".".join(parts[:i]) for i in range(1, len(parts))]
            for dep in [d for p in [*parents, target] for d in graph.get(p, [])]:
                if dep.top:
                    stack.append([*chain, dep.target])


def project_graph(root: Path = ROOT) -> dict[str, list[Import]]:
    """The import graph of the project's own modules, read from disk."""
    return {
        module: imports_of(module, path.read_text(), is_package=path.name == "__init__.py")
        for module, path in module_files(root).items()
    }
