"""One shell, one call: a component unpacks its artifacts, calls one logic function, writes outputs.

Read with :mod:`ast` (nothing imported): the body of every ``@dsl.component`` function,
its docstring and imports aside, holds no statement-level control flow (``if``, ``for``,
``while``, ``try``, ``with``) nor function of its own (a closure is
composition too), and calls at most one function of the step logic (a
lower-case name imported from ``planets_mlops`` outside the components; classes such as
parameter objects and clients are constructors, not steps). Composition and provenance
rules belong in the logic, where the pure tier tests them.
"""

from __future__ import annotations

import ast

import pytest

from tests.support.layers import ROOT

FLOW = (ast.If, ast.For, ast.While, ast.Try, ast.With, ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)


def shells() -> dict[str, tuple[list[str], list[str]]]:
    """Component name -> (statement-level control flow, calls into the step logic)."""
    found = {}
    for path in sorted((ROOT / "components").glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if not isinstance(node, ast.FunctionDef) or not any(
                "component" in ast.unparse(d) for d in node.decorator_list
            ):
                continue
            logic = {
                alias.asname or alias.name
                for inner in ast.walk(node)
                if isinstance(inner, ast.ImportFrom)
                and (inner.module or "").startswith("planets_mlops")
                and not (inner.module or "").startswith("planets_mlops.components")
                for alias in inner.names
            }
            body = [
                s
                for s in node.body
                if not isinstance(s, (ast.Import, ast.ImportFrom))
                and not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))
            ]
            flow = [type(n).__name__ for s in body for n in ast.walk(s) if isinstance(n, FLOW)]
            calls = [
                n.func.id
                for s in body
                for n in ast.walk(s)
                if isinstance(n, ast.Call)
                and isinstance(n.func, ast.Name)
                and n.func.id in logic
                and n.func.id[:1].islower()
            ]
            found[node.name] = (flow, calls)
    return found


def test_every_component_is_read():
    assert len(shells()) >= 14


@pytest.mark.parametrize("name", sorted(shells()))
def test_a_shell_calls_one_logic_function(name):
    flow, calls = shells()[name]
    assert not flow and len(calls) <= 1, (
        f"{name}: control flow {flow}, logic calls {calls}; move them into the logic"
    )


def test_no_shell_names_a_model_folder_file():
    # planets_mlops/model_folder.py owns the model folder's file names: a shell takes them
    # from there (docstrings aside, which describe the files to people).
    from planets_mlops import model_folder

    names = {model_folder.ONNX_FILE, *model_folder.REQUIRED_FILES, *model_folder.OPTIONAL_FILES}
    found = []
    for path in sorted((ROOT / "components").glob("*.py")):
        tree = ast.parse(path.read_text())
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.FunctionDef)) and ast.get_docstring(node) is not None
        }
        found += [
            f"{path.name}:{node.lineno}: {node.value!r}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and node.value in names and id(node) not in docstrings
        ]
    assert found == []
