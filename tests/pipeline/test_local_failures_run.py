"""What a person sees when a local run fails: the step's own error, its log, nothing else.

The pipeline-tier tests of test_local_failures (the rest: tests/pure/test_local_failures.py).
"""

import os
import subprocess
import sys
from pathlib import Path

from planets_mlops.datarepo import git


def test_failed_local_run_shows_the_steps_message_and_log_path_without_colour(tmp_path):
    repo = tmp_path / "not-a-data-repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "README.md").write_text("no DVC-tracked data here\n")
    git(repo, "add", "README.md")
    git(repo, "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "init")
    workdir = tmp_path / "work"
    command = [sys.executable, "-m", "planets_mlops.app.quickstart", "--workdir", str(workdir)]
    command += ["--data-repo", str(repo), "--no-tracking"]
    env = {**os.environ, "FORCE_COLOR": "1"}  # kfp colours its output; none may reach a pipe
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "\x1b[" not in output
    assert "Traceback" not in done.stderr.split("Last ")[0]  # no kfp traceback above the message
    assert (
        f"Step pull-data failed: DataSourceError: data_path='data/raw' is not tracked in '{repo}' at 'main'."
        in output
    )
    logs = list((workdir / "logs").iterdir())
    assert len(logs) == 1
    step_log, run_log = logs[0] / "pull-data.log", logs[0] / "training.log"
    assert f"Last 15 lines of its log, {step_log}:" in output
    assert f"Whole run's log: {run_log}" in output
    assert "DataSourceError" in step_log.read_text() and "\x1b[" not in run_log.read_text()
    assert Path(run_log).read_text().count("Executing task") == 1
