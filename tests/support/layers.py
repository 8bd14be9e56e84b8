"""The import rules of the suite, read from the source with :mod:`ast` (no imports run).

Layers, highest first; a module may import its own layer and the ones below it only::

    app        planets_mlops.app.*         CLI, KFP client, local runner, quickstart, demos
    pipelines  planets_mlops.pipelines.*   (folder pipelines/)
    components planets_mlops.components.*  (folder components/)
    logic      planets_mlops.*             everything else: the steps' pure logic

On top of the direction: nothing imports a bare ``components`` or ``pipelines`` package,
the logic never imports ``kfp``, and the module top of a component or pipeline module
imports nothing heavy, directly or through a project module it imports at its top.

Inside the logic (contracts in the manner of import-linter's):

- ``monitoring`` and ``service`` do not import each other, except ``service ->
  monitoring.writer`` (the service writes prediction records; nothing else crosses);
- a step module (the logic a component calls, :data:`STEP_MODULES`) imports no sibling step:
  what two steps share lives in a module of its own (the model folder, the plots...);
- no import circle, at any depth (:func:`cycles`);
- every logic module is reached from a component, a pipeline or what the serving image runs
  (:func:`unreachable`): a module no image runs is a developer tool, and lives under ``app/``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

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


# The logic each component calls: one module per step.
STEP_MODULES = frozenset(
    {
        "planets_mlops.pull", "planets_mlops.prepare", "planets_mlops.train", "planets_mlops.evaluate",
        "planets_mlops.package", "planets_mlops.deploy.apply", "planets_mlops.registry.steps",
        "planets_mlops.labelstudio.importer", "planets_mlops.labelstudio.predictions",
        "planets_mlops.labelstudio.inbox_tasks", "planets_mlops.monitoring.drift",
        "planets_mlops.monitoring.alert",
    }
)  # fmt: skip
# Step -> step arrows not yet moved into a shared module (issue 25 emptied it: the alert reads
# the drift summary through monitoring.summary); the test fails when one of these no longer
# exists, so that the list only shrinks.
KNOWN_STEP_ARROWS: frozenset[tuple[str, str]] = frozenset()
# The only arrow between the service and monitoring.
SERVICE_TO_MONITORING = frozenset({"planets_mlops.monitoring.writer"})
# What the serving image runs besides the components (images/Dockerfile target serving, the bento).
SERVING_ROOTS = ("planets_mlops.serving_entrypoint", "planets_mlops.service.service")


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
        bad.extend(_logic_contracts(module, imports, set(graph)))
        if own in ("components", "pipelines"):
            for imp, chain in _heavy_at_top(module, graph):
                via = " -> ".join(chain)
                bad.append(
                    Violation(
                        module, imp.line, f"heavy import at module top: {via}; import it inside the function"
                    )
                )
    return bad


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _owner(target: str, modules: set[str]) -> str:
    """The project module an import lands in (``a.b.name`` -> ``a.b`` when ``name`` is not one)."""
    parts = target.split(".")
    while len(parts) > 1 and ".".join(parts) not in modules:
        parts.pop()
    return ".".join(parts)


def _logic_contracts(module: str, imports: Iterable[Import], modules: set[str]) -> Iterator[Violation]:
    service, monitoring = "planets_mlops.service", "planets_mlops.monitoring"
    for imp in imports:
        target = _owner(imp.target, modules)
        if _within(module, monitoring) and _within(target, service):
            yield Violation(module, imp.line, f"monitoring imports the service ({target})")
        if (
            _within(module, service)
            and _within(target, monitoring)
            and target != monitoring
            and target not in SERVICE_TO_MONITORING
        ):
            yield Violation(
                module, imp.line, f"the service imports {target}: only monitoring.writer may cross"
            )
        if (
            module in STEP_MODULES
            and target in STEP_MODULES
            and target != module
            and (module, target) not in KNOWN_STEP_ARROWS
        ):
            yield Violation(
                module, imp.line, f"step {module} imports the sibling step {target}: share a module instead"
            )


def cycles(graph: Mapping[str, Iterable[Import]]) -> list[list[str]]:
    """Import circles between project modules (any import, at the top or in a function).

    Tarjan's strongly connected components of more than one module, each sorted. An arrow
    from a module to its own package (``from planets_mlops.deploy import manifests`` in
    ``deploy.apply``) is not counted: Python runs a package's ``__init__`` before any of its
    modules anyway.
    """
    modules = set(graph)
    edges = {
        m: sorted(
            t
            for t in {_owner(i.target, modules) for i in graph[m]} & modules - {m}
            if not m.startswith(t + ".")
        )
        for m in sorted(modules)
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in edges[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(modules):
        if module not in index:
            visit(module)
    return sorted(found)


def unreachable(graph: Mapping[str, Iterable[Import]]) -> list[str]:
    """Logic modules no component, pipeline or serving root reaches, at any depth."""
    modules = set(graph)
    roots = [m for m in modules if layer_of(m) in ("components", "pipelines")] + [
        r for r in SERVING_ROOTS if r in modules
    ]
    seen = reached(graph, roots)
    return sorted(m for m in modules if layer_of(m) == "logic" and m not in seen)


def reached(graph: Mapping[str, Iterable[Import]], roots: Iterable[str]) -> set[str]:
    """Every project module that importing ``roots`` may run (their parent packages too)."""
    modules = set(graph)
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        module = stack.pop()
        if module in seen or module not in modules:
            continue
        seen.add(module)
        parts = module.split(".")
        stack.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # parent packages run too
        stack.extend(_owner(imp.target, modules) for imp in graph.get(module, ()))
    return seen


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
