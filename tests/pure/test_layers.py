"""One-way layers (app -> pipelines -> components -> logic) and a light compile path."""

from __future__ import annotations

import functools
import json
import subprocess
import sys

import pytest

from tests.support import layers


@functools.cache
def _graph_on_disk() -> dict[str, list[layers.Import]]:
    return layers.project_graph()


def project_graph() -> dict[str, list[layers.Import]]:
    """The project's import graph, read from disk once per test process (each test gets a copy
    it may change)."""
    return {module: list(imports) for module, imports in _graph_on_disk().items()}


def test_the_project_keeps_its_layers():
    graph = project_graph()
    assert {layers.layer_of(m) for m in graph} == set(layers.LAYERS)
    violations = layers.check(graph)
    assert not violations, "\n".join(map(str, violations))


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("planets_mlops.train", "from planets_mlops.app.cli import main", "logic imports app"),
        (
            "planets_mlops.train",
            "def f():\n    from planets_mlops.pipelines import training",
            "logic imports pipelines",
        ),
        (
            "planets_mlops.components.train_model",
            "import planets_mlops.pipelines.steps",
            "components imports pipelines",
        ),
        ("planets_mlops.pipelines.steps", "from planets_mlops import app", "pipelines imports app"),
        (
            "planets_mlops.app.cli",
            "from pipelines.training import training",
            "imports bare 'pipelines.training'",
        ),
        ("planets_mlops.dataset", "def f():\n    import kfp", "logic imports kfp"),
        ("planets_mlops.pipelines.training", "import tensorflow as tf", "heavy import at module top"),
        (
            "planets_mlops.components.pull_data",
            "from planets_mlops.train import fit",
            "planets_mlops.train -> numpy",
        ),
        (
            "planets_mlops.monitoring.drift",
            "def f():\n    from planets_mlops.service.inference import answers",
            "monitoring imports the service",
        ),
        (
            "planets_mlops.service.service",
            "from planets_mlops.monitoring.records import parse_time",
            "only monitoring.writer may cross",
        ),
        (
            "planets_mlops.package",
            "def f():\n    from planets_mlops.train import fit",
            "imports the sibling step planets_mlops.train",
        ),
        (
            "planets_mlops.monitoring.alert",
            "from planets_mlops.monitoring.drift import DRIFT",
            "imports the sibling step planets_mlops.monitoring.drift",
        ),
    ],
)
def test_an_arrow_added_back_is_caught(module, source, expected):
    graph = project_graph()
    graph["planets_mlops.train"] = [
        *graph.get("planets_mlops.train", []),
        layers.Import("planets_mlops.train", "numpy", 1, True),
    ]
    graph[module] = [*graph.get(module, []), *layers.imports_of(module, source)]
    messages = [str(v) for v in layers.check(graph) if v.module == module]
    assert any(expected in m for m in messages), messages


def test_the_known_step_arrows_still_exist():
    # The exceptions list only shrinks: an arrow moved out must leave it.
    graph = project_graph()
    modules = set(graph)
    found = {
        (module, layers._owner(imp.target, modules)) for module, imports in graph.items() for imp in imports
    }
    assert layers.KNOWN_STEP_ARROWS - found == set()
    assert layers.STEP_MODULES <= modules


def test_the_import_graph_has_no_circle():
    # `schedule sync` runs each entry through the CLI's own main, which the parser hands it
    # (run_command) instead of an import back into the entry module.
    assert layers.cycles(project_graph()) == []


def test_a_circle_is_caught():
    graph = project_graph()
    graph["planets_mlops.errors"] = [
        *graph["planets_mlops.errors"],
        *layers.imports_of("planets_mlops.errors", "def f():\n    from planets_mlops.train import fit"),
    ]
    assert any({"planets_mlops.errors", "planets_mlops.train"} <= set(c) for c in layers.cycles(graph))


def test_serving_sources_are_the_service_import_closure():
    # The bento carries exactly the modules the service reaches (at any depth): a module
    # moved or added under the service changes the list, or packaging ships a broken bento.
    from planets_mlops.package import SERVICE_IMPORT, SERVING_SOURCES

    graph = project_graph()
    files = layers.module_files()
    closure = layers.reached(graph, [SERVICE_IMPORT.split(":")[0]])
    assert {files[m].relative_to(layers.ROOT).as_posix() for m in closure} == set(SERVING_SOURCES)


def test_every_logic_module_is_reached_from_an_image():
    assert layers.unreachable(project_graph()) == [], "move developer tools under planets_mlops/app/"


def test_an_unreached_module_is_caught():
    graph = project_graph()
    graph["planets_mlops.orphan"] = layers.imports_of("planets_mlops.orphan", "import json")
    assert layers.unreachable(graph) == ["planets_mlops.orphan"]


def test_allowed_imports_pass():
    graph = {
        "planets_mlops.components.train_model": layers.imports_of(
            "planets_mlops.components.train_model",
            "from kfp import dsl\nfrom planets_mlops.components.images import IMAGE\n"
            "def f():\n    import tensorflow\n    from planets_mlops.train import fit\n",
        ),
        "planets_mlops.app.cli": layers.imports_of(
            "planets_mlops.app.cli", "from planets_mlops.pipelines import BUILDERS"
        ),
    }
    assert layers.check(graph) == []


def test_compiling_loads_no_heavy_module():
    """Import every pipeline and component: none of the ML stack may load."""
    code = (
        "import sys, json\n"
        "import planets_mlops.app.cli, planets_mlops.pipelines.compile\n"
        "from planets_mlops.app.cli import discover_components\n"
        "discover_components()\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert loaded & layers.HEAVY - {"google", "kubernetes", "requests"} == set()


def test_every_package_is_in_the_distribution():
    # setuptools installs the listed packages only: a package missing from the list works
    # in the editable checkout and is absent from every image.
    import tomllib

    listed = set(
        tomllib.loads((layers.ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        layers.SOURCE_ROOTS[folder]
        + "".join("." + part for part in init.parent.relative_to(layers.ROOT / folder).parts)
        for folder in layers.SOURCE_ROOTS
        for init in (layers.ROOT / folder).rglob("__init__.py")
    }
    assert found - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
