"""Diff two `planets-mlops compile --out-dir` folders, ignoring descriptions and image tags.

    .venv/bin/planets-mlops compile --out-dir /tmp/before   # on the old commit
    .venv/bin/planets-mlops compile --out-dir /tmp/after    # on the new one
    .venv/bin/python scripts/ir_diff.py /tmp/before /tmp/after

Description fields are dropped, image tags (derived from the source digest) masked, and the
components' embedded Python compared without docstrings; every other difference is printed.
Exit 1 when there is one.
"""

import ast
import difflib
import glob
import os
import re
import sys

import yaml


def nodoc(src):
    try:
        tree = ast.parse(src)
    except SyntaxError:
        return src
    for node in ast.walk(tree):
        if (
            isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module))
            and node.body
            and isinstance(node.body[0], ast.Expr)
            and isinstance(getattr(node.body[0], "value", None), ast.Constant)
            and isinstance(node.body[0].value.value, str)
        ):
            node.body[0].value.value = "<docstring>"
    return "<python>" + ast.dump(tree)


TAG = re.compile(r"(ghcr\.io/planets-mlops/[a-z-]+):[0-9][^'\"\s]*")


def strip(x):
    if isinstance(x, str):
        x = TAG.sub(r"\1:TAG", x)
        return nodoc(x) if "def " in x and "\n" in x else x
    if isinstance(x, dict):
        return {k: strip(v) for k, v in x.items() if k != "description"}
    if isinstance(x, list):
        return [strip(v) for v in x]
    return x


def walk(x, y, path, out):
    if isinstance(x, dict) and isinstance(y, dict):
        for k in sorted(set(x) | set(y)):
            if k not in x or k not in y:
                out.append((path + "/" + k, "missing on one side"))
                continue
            walk(x[k], y[k], path + "/" + k, out)
    elif isinstance(x, list) and isinstance(y, list) and len(x) == len(y):
        for i, (u, v) in enumerate(zip(x, y)):
            walk(u, v, f"{path}[{i}]", out)
    elif x != y:
        out.append((path, x, y))


a, b = sys.argv[1], sys.argv[2]
rel = sorted(os.path.relpath(p, a) for p in glob.glob(f"{a}/**/*.yaml", recursive=True))
assert rel == sorted(os.path.relpath(p, b) for p in glob.glob(f"{b}/**/*.yaml", recursive=True))
total = 0
for r in rel:
    da = [strip(d) for d in yaml.safe_load_all(open(f"{a}/{r}"))]
    db = [strip(d) for d in yaml.safe_load_all(open(f"{b}/{r}"))]
    out = []
    walk(da, db, r, out)
    for item in out:
        total += 1
        if len(item) == 3 and isinstance(item[1], str) and "\n" in item[1]:
            print(item[0])
            print(
                "\n".join(difflib.unified_diff(item[1].splitlines(), item[2].splitlines(), lineterm="", n=1))
            )
        else:
            print(item)
print("differences outside descriptions:", total)
sys.exit(1 if total else 0)
