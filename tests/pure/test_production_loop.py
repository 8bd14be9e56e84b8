"""The loop's pure parts: the gate's reasons as the loop and its benchmark print them, and where
its Label Studio server comes from."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from planets_mlops.app.production_loop import gate_reasons

VERDICT = """# Promotion gate: **KEEP PRODUCTION**

Candidate `c` against production `p`, paired on 338 validation images of the 10 classes both know.

- Worse beyond noise on Moon: 8 losses against 0 wins, McNemar p = 0.007812 < 0.05.
- Accuracy gain +0.0325 reaches the required +0.0000.

## Overall (shared classes)

| images | production | candidate |
"""


def run_with(verdict: object) -> SimpleNamespace:
    return SimpleNamespace(tasks={"evaluate-model": SimpleNamespace(artifacts={"verdict": verdict})})


def test_the_gate_reasons_are_the_verdicts_bullet_lines(tmp_path):
    path = tmp_path / "verdict"
    path.write_text(VERDICT)
    assert gate_reasons(run_with(path)) == [
        "Worse beyond noise on Moon: 8 losses against 0 wins, McNemar p = 0.007812 < 0.05.",
        "Accuracy gain +0.0325 reaches the required +0.0000.",
    ]


def test_no_verdict_no_reasons(tmp_path):
    assert gate_reasons(SimpleNamespace(tasks={})) == []
    assert gate_reasons(run_with(None)) == []
    assert gate_reasons(run_with(tmp_path / "missing")) == []


def test_the_label_studio_server_venv_defaults_to_the_repository_root(monkeypatch):
    """The loop's Label Studio comes from ``<repo>/.venv-labelstudio`` (``make setup``), wherever
    the server module lives in the package."""
    from pathlib import Path

    from planets_mlops.app.dev.labelstudio_server import server_venv

    monkeypatch.delenv("LABEL_STUDIO_VENV", raising=False)
    root = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").is_file())
    assert server_venv() == root / ".venv-labelstudio"


@pytest.mark.parametrize("password", ["-Ab3_x", "--looks-like-an-option", "plain"])
def test_the_label_studio_init_command_keeps_a_password_that_begins_with_a_dash(password):
    """One Label Studio start in 64 failed: ``secrets.token_urlsafe`` began with ``-``, and
    ``--password -Ab3`` made argparse (Label Studio's parser) say "expected one argument"."""
    import argparse

    from planets_mlops.app.dev.labelstudio_server import init_command

    creds = {"username": "admin@planets.local", "password": password, "token": "t0k"}
    command = init_command(Path("label-studio"), Path("/tmp/project"), creds)
    parser = argparse.ArgumentParser()  # the options of `label-studio init` that the command sets
    parser.add_argument("command")
    parser.add_argument("project_name")
    parser.add_argument("-q", action="store_true")
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("--username")
    parser.add_argument("--password")
    parser.add_argument("--user-token")
    parser.add_argument("--enable-legacy-api-token", action="store_true")
    parsed = parser.parse_args(command[1:])
    assert (parsed.username, parsed.password, parsed.user_token) == (creds["username"], password, "t0k")
