"""The base install: enough to compile pipelines, none of the step runtimes, no bare packages.

Builds the project's wheel (``make wheel``: ``uv build --wheel``), installs it into a fresh
virtual environment as the README says (``pip install dist/planets_mlops-...whl -c
requirements.lock``, here with uv), then compiles every pipeline from outside the repository
with the installed CLI. The README's git URL is checked with ``git+file://`` at this commit.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNTIMES = ("tensorflow", "tensorflow-cpu", "bentoml", "dvc", "label-studio-sdk", "onnxruntime", "numpy")


def _uv() -> str:
    found = Path(sys.executable).with_name("uv")
    return (
        str(found) if found.exists() else shutil.which("uv") or pytest.fail("uv is missing: run make setup")
    )


def test_base_install_compiles_both_pipelines(tmp_path):
    subprocess.run(
        [_uv(), "build", "-q", "--wheel", "--out-dir", str(tmp_path / "dist"), str(ROOT)], check=True
    )
    (wheel,) = (tmp_path / "dist").glob("planets_mlops-*-py3-none-any.whl")
    assert f"`pip install dist/{wheel.name} -c requirements.lock`" in (ROOT / "README.md").read_text()
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
            str(wheel),
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


def test_install_from_a_git_url(tmp_path):
    # The README's line for a machine without a checkout, with this repository as the git host.
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, check=True, capture_output=True, text=True)
    venv = tmp_path / "venv"
    subprocess.run([_uv(), "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    url = f"planets-mlops @ git+file://{ROOT}@{head.stdout.strip()}"
    subprocess.run(
        [
            _uv(),
            "pip",
            "install",
            "-q",
            "--python",
            str(venv / "bin" / "python"),
            "-c",
            str(ROOT / "requirements.lock"),
            url,
        ],
        check=True,
    )
    shown = subprocess.run(
        [venv / "bin" / "planets-mlops", "compile", "--help"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        text=True,
    )
    assert "--no-components" in shown.stdout
