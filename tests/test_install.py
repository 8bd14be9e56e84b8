"""The base install: enough to compile pipelines, none of the step runtimes, no bare packages.

Builds the project into a fresh virtual environment with uv (from the lock's exact pins),
then compiles both pipelines from outside the repository with the installed CLI.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.install

ROOT = Path(__file__).resolve().parents[1]
RUNTIMES = ("tensorflow", "tensorflow-cpu", "bentoml", "dvc", "label-studio-sdk", "onnxruntime", "numpy")


def _uv() -> str:
    found = Path(sys.executable).with_name("uv")
    return (
        str(found) if found.exists() else shutil.which("uv") or pytest.fail("uv is missing: run make setup")
    )


def test_base_install_compiles_both_pipelines(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([_uv(), "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [
            _uv(),
            "pip",
            "install",
            "-q",
            "--python",
            str(python),
            "-c",
            str(ROOT / "requirements.lock"),
            str(ROOT),
        ],
        check=True,
    )
    listed = subprocess.run(
        [_uv(), "pip", "list", "--python", str(python), "--format", "json"],
        check=True,
        capture_output=True,
        text=True,
    )
    installed = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert "planets-mlops" in installed and "kfp" in installed
    assert installed.isdisjoint(RUNTIMES), sorted(installed & set(RUNTIMES))

    probe = "import importlib.util as u; print([n for n in ('components', 'pipelines') if u.find_spec(n)])"
    bare = subprocess.run([python, "-c", probe], cwd=tmp_path, check=True, capture_output=True, text=True)
    assert bare.stdout.strip() == "[]"

    out = tmp_path / "out"
    subprocess.run(
        [venv / "bin" / "planets-mlops", "compile", "--out-dir", str(out)], cwd=tmp_path, check=True
    )
    assert sorted(p.name for p in (out / "pipelines").glob("*.yaml")) == [
        "monitoring.yaml",
        "retraining.yaml",
        "training.yaml",
    ]
    assert len(list((out / "components").glob("*.yaml"))) >= 9
