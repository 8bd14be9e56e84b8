"""mypy over the suite as it installs, so that it follows pipelines -> components.

``components/`` and ``pipelines/`` install as ``planets_mlops.components`` and
``planets_mlops.pipelines`` (``[tool.setuptools.package-dir]``); mypy cannot follow the
editable install's import hook, so this builds the installed layout as a tree of symbolic
links under ``build/typecheck`` and runs ``mypy -p planets_mlops`` there, with the
settings of ``pyproject.toml``. Reports name the files of the checkout.

Usage: ``python scripts/typecheck.py [MYPY OPTIONS]`` (``make lint`` runs it). An editor can
use the same tree as its analysis root (``python scripts/typecheck.py --link-only``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TREE = ROOT / "build" / "typecheck"
MAPPED = ("components", "pipelines")


def link_tree(root: Path = ROOT, tree: Path = TREE) -> Path:
    """(Re)build ``tree/planets_mlops`` as links to the package and the mapped folders."""
    package = tree / "planets_mlops"
    shutil.rmtree(tree, ignore_errors=True)
    package.mkdir(parents=True)
    for child in sorted((root / "planets_mlops").iterdir()):
        if child.name != "__pycache__" and child.name not in MAPPED:
            (package / child.name).symlink_to(child)
    for folder in MAPPED:
        (package / folder).symlink_to(root / folder)
    return tree


def to_checkout(report: str) -> str:
    """Rewrite the tree's paths in mypy's report to the checkout's (``components/x.py``)."""
    return re.sub(rf"^planets_mlops/({'|'.join(MAPPED)})/", r"\1/", report, flags=re.MULTILINE)


def main(argv: list[str]) -> int:
    """Run mypy over the link tree; the exit status is mypy's."""
    tree = link_tree()
    if argv == ["--link-only"]:
        print(tree / "planets_mlops")
        return 0
    done = subprocess.run(
        [
            sys.executable, "-m", "mypy",
            "--config-file", str(ROOT / "pyproject.toml"),
            "--cache-dir", str(ROOT / ".mypy_cache"),
            "-p", "planets_mlops",
            *argv,
        ],
        cwd=tree, capture_output=True, text=True, check=False,
    )  # fmt: skip
    sys.stdout.write(to_checkout(done.stdout))
    sys.stderr.write(done.stderr)
    return done.returncode


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
