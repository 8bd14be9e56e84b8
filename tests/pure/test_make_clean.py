"""``make clean`` keeps what the quickstart would lose; ``make clean-all`` removes it too."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def checkout(tmp_path):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    for folder in (
        "build/pipelines",
        ".pytest_cache",
        ".work/quickstart/mlflow",
        ".work/quickstart/data-repo",
        ".work/labelstudio-template",
        ".work/bench-hostile",
    ):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "file").write_text("x")
    return tmp_path


def _make(checkout: Path, target: str) -> str:
    done = subprocess.run(["make", "-s", target], cwd=checkout, capture_output=True, text=True, check=True)
    return done.stdout


def test_clean_keeps_the_quickstart_state_and_says_so(checkout):
    out = _make(checkout, "clean")
    assert not (checkout / "build").exists() and not (checkout / ".pytest_cache").exists()
    assert sorted(p.name for p in (checkout / ".work").iterdir()) == ["quickstart"]
    assert (checkout / ".work/quickstart/mlflow/file").is_file()
    assert (checkout / ".work/quickstart/data-repo/file").is_file()
    assert "kept .work/quickstart" in out and "make clean-all removes it" in out


def test_clean_all_removes_the_quickstart_state(checkout):
    _make(checkout, "clean-all")
    assert not (checkout / ".work").exists() and not (checkout / "build").exists()


def test_clean_without_a_work_folder_is_quiet(checkout):
    shutil.rmtree(checkout / ".work")
    assert _make(checkout, "clean") == ""
