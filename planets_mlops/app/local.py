"""Run pipelines on this machine with ``kfp.local`` and find what they wrote."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_STARTED = re.compile(r"Executing task '([^']+)'")
_FINISHED = re.compile(r"Task '([^']+)' finished with status (\w+)")


@dataclass
class TaskResult:
    """One task of a local run: its artifacts (folder/file paths + metadata) and parameters."""

    name: str
    seconds: float = 0.0
    artifacts: dict[str, Path] = field(default_factory=dict)
    metadata: dict[str, dict] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class LocalRun:
    """A finished local pipeline run."""

    root: Path
    seconds: float
    tasks: dict[str, TaskResult] = field(default_factory=dict)
    log_file: Path | None = None

    def artifact(self, task: str, name: str) -> Path:
        """The local path of output artifact ``name`` of ``task``.

        Args:
            task: Task name as kfp.local reports it (e.g. ``"train-model"``).
            name: Output name of that task (e.g. ``"model"``).

        Returns:
            The artifact's file or folder under the run root.

        Raises:
            KeyError: the run has no such task or output; the message names both and the run.
        """
        try:
            return self.tasks[task].artifacts[name]
        except KeyError as exc:
            raise KeyError(f"No artifact {name!r} of task {task!r} in run {self.root}") from exc

    def metadata(self, task: str, name: str) -> dict:
        """The metadata kfp.local recorded for output ``name`` of ``task``.

        Args:
            task: Task name as kfp.local reports it.
            name: Output name of that task.

        Returns:
            The artifact's metadata, or ``{}`` when the task wrote none (or does not exist).
        """
        return self.tasks[task].metadata.get(name, {})


class ProgressLog(io.TextIOBase):
    """Sends kfp.local's verbose output to a log file and one line per step to the terminal.

    Args:
        log: Receives everything, unchanged.
        terminal: Receives one line when a task starts and one when it finishes (with its
            status and duration).

    Attributes:
        durations: Task name -> seconds, for every task that finished.
    """

    def __init__(self, log: TextIO, terminal: TextIO) -> None:
        self.log = log
        self.terminal = terminal
        self.started: dict[str, float] = {}
        self.durations: dict[str, float] = {}
        self._buffer = ""

    def writable(self) -> bool:
        """Always True: this stream only accepts writes."""
        return True

    def write(self, text: str) -> int:
        """Copy ``text`` to the log and turn every complete start/finish line into a progress line.

        Args:
            text: A chunk of kfp.local's output (need not end at a line break).

        Returns:
            The number of characters accepted (all of them).
        """
        self.log.write(text)
        self._buffer += text
        while "\n" in self._buffer:
            line, self._buffer = self._buffer.split("\n", 1)
            self._line(line)
        return len(text)

    def _line(self, line: str) -> None:
        line = _ANSI.sub("", line)
        if match := _STARTED.search(line):
            self.started[match.group(1)] = time.monotonic()
            self.terminal.write(f"  > {match.group(1)} ...\n")
        elif match := _FINISHED.search(line):
            name, status = match.groups()
            seconds = time.monotonic() - self.started.get(name, time.monotonic())
            self.durations[name] = seconds
            mark = "ok" if status == "SUCCESS" else status
            self.terminal.write(
                f"  {'+' if status == 'SUCCESS' else '!'} {name}: {mark} in {seconds:.1f} s\n"
            )
        self.terminal.flush()

    def flush(self) -> None:
        """Flush the log file (the terminal is flushed after every progress line)."""
        self.log.flush()


def init_local(pipeline_root: Path, runner: Any = None) -> None:
    """``kfp.local`` with ``runner``; default: this Python environment (no containers).

    ``runner`` may be a ``kfp.local.DockerRunner`` (see :mod:`planets_mlops.app.containers`)
    to run every task in the image its component names.
    """
    from kfp import local

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    local.init(
        runner=runner if runner is not None else local.SubprocessRunner(use_venv=False),
        pipeline_root=str(Path(pipeline_root).resolve()),
        raise_on_error=True,
    )


def _read_task(task_dir: Path) -> TaskResult:
    result = TaskResult(name=task_dir.name)
    for path in sorted(task_dir.iterdir()):
        if path.name != "executor_output.json":
            result.artifacts[path.name] = path
    output_file = task_dir / "executor_output.json"
    if output_file.is_file():
        data = json.loads(output_file.read_text())
        for name, entry in data.get("artifacts", {}).items():
            for artifact in entry.get("artifacts", []):
                result.metadata[name] = artifact.get("metadata", {})
                result.artifacts.setdefault(name, Path(artifact["uri"]))
        result.parameters = data.get("parameterValues", {})
    return result


def run_local(
    pipeline: Callable,
    pipeline_root: Path,
    log_file: Path | None = None,
    runner: Any = None,
    **arguments: Any,
) -> LocalRun:
    """Run ``pipeline`` under ``kfp.local`` and index what each task wrote.

    Args:
        pipeline: a ``@dsl.pipeline`` function.
        pipeline_root: folder receiving one sub-folder per run.
        log_file: when given, kfp.local's full output goes there and the terminal shows
            one progress line per step; otherwise everything goes to stdout.
        runner: the kfp.local runner (default: SubprocessRunner in this environment).
        **arguments: pipeline parameters.
    """
    init_local(pipeline_root, runner)
    root = Path(pipeline_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    before = set(root.iterdir())
    started = time.monotonic()
    durations: dict[str, float] = {}
    if log_file is None:
        pipeline(**arguments)
    else:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        with open(log_file, "w") as log:
            progress = ProgressLog(log, sys.stdout)
            try:
                with contextlib.redirect_stdout(progress), warnings.catch_warnings():
                    # kfp.local warns that images and cluster settings are not used locally:
                    # expected here, and it would bury the progress lines.
                    warnings.simplefilter("ignore")
                    pipeline(**arguments)
            finally:
                durations = progress.durations
    seconds = time.monotonic() - started
    new = sorted(set(root.iterdir()) - before, key=lambda p: p.stat().st_mtime)
    run = LocalRun(root=new[-1] if new else root, seconds=seconds, log_file=log_file)
    for task_dir in sorted(p for p in run.root.iterdir() if p.is_dir()):
        run.tasks[task_dir.name] = _read_task(task_dir)
        run.tasks[task_dir.name].seconds = durations.get(task_dir.name, 0.0)
    return run
