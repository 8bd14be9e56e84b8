"""Run pipelines on this machine with ``kfp.local`` and find what they wrote.

Every argument is checked against the pipeline's inputs and the steps' own rules before the
first step runs. With a log, each run gets its own folder (never reused): ``run.log``, all of
kfp.local's output without colour codes, and one ``<task>.log`` per step. A failed step
raises :class:`StepFailedError`, whose message is the step's own error, the last lines of its
log and the log's path, in place of kfp.local's traceback.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import re
import sys
import textwrap
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from planets_mlops.errors import PlanetsError
from planets_mlops.progress import ProgressLine, parse_line
from planets_mlops.warm_trainer import warm_trainer

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_STARTED = re.compile(r"Executing task '([^']+)'")
_FINISHED = re.compile(r"Task '([^']+)' finished with status (\w+)")
# The last line of a Python traceback: "package.module.SomeError: message".
_EXCEPTION = re.compile(
    r"^\s*((?:[A-Za-z_][\w]*\.)*[A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt|Warning)\w*)(?::\s?(.*))?$"
)
TAIL_LINES = 15


def strip_ansi(text: str) -> str:
    """``text`` without terminal colour codes."""
    return _ANSI.sub("", text)


class StepFailedError(PlanetsError):
    """A step of a local run failed; the message is its own error, its log's tail and path.

    Args:
        task: The failed task's name (e.g. ``"pull-data"``).
        error: The step's exception line (``DataSourceError: ...``), or None when its log
            holds no Python traceback.
        tail: The last lines of the step's log.
        log_file: The step's log.
        run_log: The whole run's log.
    """

    def __init__(self, task: str, error: str | None, tail: list[str], log_file: Path, run_log: Path) -> None:
        self.task = task
        self.error = error
        self.tail = tail
        self.log_file = log_file
        self.run_log = run_log
        lines = [f"Step {task} failed: {error or 'see its log below'}"]
        lines.append(f"Last {len(tail)} lines of its log, {log_file}:")
        lines += [f"  | {line}" for line in tail]
        lines.append(f"Whole run's log: {run_log}")
        super().__init__("\n".join(lines))


def step_error(log_text: str) -> str | None:
    """The exception a step's log ends with, as ``ErrorName: message`` (continuation lines kept).

    Args:
        log_text: The step's log, colour codes removed.

    Returns:
        The last traceback's final exception (its class name without the module path), or
        None when the log has no traceback.
    """
    lines = log_text.splitlines()
    starts = [
        i for i, line in enumerate(lines) if line.strip().startswith("Traceback (most recent call last)")
    ]
    if not starts:
        return None
    found: tuple[int, re.Match[str]] | None = None
    for i in range(starts[-1] + 1, len(lines)):
        match = _EXCEPTION.match(lines[i])
        if match:
            found = (i, match)
    if found is None:
        return None
    index, match = found
    indent = len(lines[index]) - len(lines[index].lstrip())
    message = [f"{match.group(1).rsplit('.', 1)[-1]}: {match.group(2) or ''}".rstrip(": ")]
    for line in lines[index + 1 :]:
        if not line.strip() or (len(line) - len(line.lstrip())) < indent or " - ERROR - " in line:
            break
        message.append(line[indent:])
    return "\n".join(message)


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

    def report_copies(self, folder: Path) -> dict[str, Path]:
        """Copy every HTML and Markdown output to ``folder`` under a name a browser opens.

        kfp.local names an output file after the output (``evaluate-model/report``), with no
        extension, so a browser shows an HTML report as source text. The copies are
        ``<task>-<output>.html`` or ``.md``, by content (HTML starts with ``<``; Markdown
        with ``#``).

        Args:
            folder: Where the copies go (created).

        Returns:
            ``"<task>/<output>"`` -> the copy, in task order.
        """
        import shutil

        copies: dict[str, Path] = {}
        for task, result in self.tasks.items():
            for name, path in result.artifacts.items():
                if not path.is_file() or path.suffix:
                    continue
                with path.open("rb") as handle:
                    head = handle.read(64).lstrip().lower()
                suffix = ".html" if head.startswith(b"<") else ".md" if head.startswith(b"#") else ""
                if suffix:
                    Path(folder).mkdir(parents=True, exist_ok=True)
                    copies[f"{task}/{name}"] = Path(folder) / f"{task}-{name}{suffix}"
                    shutil.copyfile(path, copies[f"{task}/{name}"])
        return copies

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

    A step's ``progress: epoch 3 of 10 (...)`` lines (:mod:`planets_mlops.progress`) are shown
    too: as a live bar when ``terminal`` is a terminal, as the same plain line otherwise.

    Args:
        log: Receives everything, colour codes removed.
        terminal: Receives one line when a task starts and one when it finishes (with its
            status and duration), and the steps' progress.
        task_logs: When given, a folder receiving one ``<task>.log`` per step.

    Attributes:
        durations: Task name -> seconds, for every task that finished.
    """

    def __init__(self, log: TextIO, terminal: TextIO, task_logs: Path | None = None) -> None:
        self.log = log
        self.terminal = terminal
        self.task_logs = task_logs
        self.started: dict[str, float] = {}
        self.durations: dict[str, float] = {}
        self.failed: list[str] = []
        self._task_log: TextIO | None = None
        self._task = ""
        self._bar: Any = None
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
        self._buffer += text
        while "\n" in self._buffer:
            line, self._buffer = self._buffer.split("\n", 1)
            self._line(line)
        return len(text)

    def _line(self, line: str) -> None:
        line = strip_ansi(line)
        self.log.write(line + "\n")
        if match := _STARTED.search(line):
            self.started[match.group(1)] = time.monotonic()
            self._open_task_log(match.group(1))
            self.terminal.write(f"  > {match.group(1)} ...\n")
        if self._task_log is not None:
            self._task_log.write(line + "\n")
        if (progress := parse_line(line)) is not None:
            self._progress(progress)
        if match := _FINISHED.search(line):
            name, status = match.groups()
            self._end_bar()
            if self._task_log is not None:
                self._task_log.close()
                self._task_log = None
            if status != "SUCCESS":
                self.failed.append(name)
            seconds = time.monotonic() - self.started.get(name, time.monotonic())
            self.durations[name] = seconds
            mark = "ok" if status == "SUCCESS" else status
            self.terminal.write(
                f"  {'+' if status == 'SUCCESS' else '!'} {name}: {mark} in {seconds:.1f} s\n"
            )
        self.terminal.flush()

    def _progress(self, line: ProgressLine) -> None:
        if not self.terminal.isatty():
            figures = f" ({line.figures})" if line.figures else ""
            self.terminal.write(f"    {self._task}: {line.what} {line.n} of {line.total}{figures}\n")
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        if self._bar is None or self._bar[1] != line.what:
            self._end_bar()
            bar = Progress(
                TextColumn(f"    {self._task}: {line.what}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[figures]}"),
                console=Console(file=self.terminal),
            )
            bar.start()
            self._bar = (bar, line.what, bar.add_task(line.what, total=line.total, figures=""))
        bar, _, task = self._bar
        bar.update(task, completed=line.n, total=line.total, figures=line.figures)

    def _end_bar(self) -> None:
        if self._bar is not None:
            self._bar[0].stop()
            self._bar = None

    def _open_task_log(self, name: str) -> None:
        self._end_bar()
        self._task = name
        if self._task_log is not None:
            self._task_log.close()
            self._task_log = None
        if self.task_logs is not None:
            self._task_log = open(self.task_logs / f"{name}.log", "w")  # noqa: SIM115 - closed at the task's end

    def flush(self) -> None:
        """Flush the log files (the terminal is flushed after every progress line)."""
        self.log.flush()
        if self._task_log is not None:
            self._task_log.flush()

    def close(self) -> None:
        """Write out a last unterminated line and close the open step's log."""
        if self._buffer:
            self._line(self._buffer)
            self._buffer = ""
        if self._task_log is not None:
            self._task_log.close()
            self._task_log = None
        self._end_bar()
        super().close()


# kfp's own ConditionEvaluator._resolve_pipeline_channel, kept when named_output_conditions() patches it.
_KFP_RESOLVE: list[Any] = []


def _resolve_channel(channel_ref: str, io_store: Any) -> Any:
    """``ConditionEvaluator._resolve_pipeline_channel`` of kfp 2.17, named outputs included.

    kfp's reads ``pipelinechannel--<task>-<output>`` as a task's output only when it holds
    ``-Output`` or ``--``; any other name (``evaluate-model-promote``) is looked up as a
    parent input, is not found, and the condition counts as False. Here a name that is not
    a parent input is the producer task's output: output names are Python identifiers (no
    ``-``), so the output is what follows the last ``-`` and the task what precedes it.
    """
    ref = channel_ref.replace("pipelinechannel--", "")
    if "-Output" in ref or "--" in ref or "-" not in ref:
        return _KFP_RESOLVE[0](channel_ref, io_store)
    for key in (ref, f"pipelinechannel--{ref}", channel_ref):
        try:
            return io_store.get_parent_input(key)
        except (ValueError, KeyError):
            continue
    task, _, output = ref.rpartition("-")
    try:
        return io_store.get_task_output(task, output)
    except (ValueError, KeyError):
        return _KFP_RESOLVE[0](channel_ref, io_store)  # kfp's warning, then None: False


def named_output_conditions() -> bool:
    """Make ``kfp.local`` evaluate a ``dsl.If`` on a named output parameter (kfp 2.17.x only).

    Without it kfp 2.17's local runner skips the body of ``dsl.If(task.outputs["promote"])``
    and reports success (see :func:`_resolve_channel`); the suite's gates (``promoted``,
    ``drift``, ``production-moved``, ``retrain``) are on named outputs. Installed once per
    process. On another kfp version nothing is patched and a warning says so: check whether
    that version still needs it (tests/pipeline/test_named_outputs_local.py tells).

    Returns:
        Whether kfp's evaluator is the patched one.
    """
    import kfp
    from kfp.local.orchestrator import enhanced_dag_orchestrator

    evaluator = enhanced_dag_orchestrator.ConditionEvaluator
    if evaluator._resolve_pipeline_channel is _resolve_channel:
        return True
    if not kfp.__version__.startswith("2.17.") or not hasattr(evaluator, "_resolve_pipeline_channel"):
        warnings.warn(
            f"kfp {kfp.__version__}: kfp.local's condition evaluator is not patched for named outputs "
            "(written for kfp 2.17.x); a dsl.If on a named output may be skipped locally",
            RuntimeWarning,
            stacklevel=2,
        )
        return False
    _KFP_RESOLVE[:] = [evaluator._resolve_pipeline_channel]
    evaluator._resolve_pipeline_channel = staticmethod(_resolve_channel)  # type: ignore[assignment]
    return True


def init_local(pipeline_root: Path, runner: Any = None) -> None:
    """``kfp.local`` with ``runner``; default: this Python environment (no containers).

    ``runner`` may be a ``kfp.local.DockerRunner`` (see :mod:`planets_mlops.app.containers`)
    to run every task in the image its component names. Installs
    :func:`named_output_conditions` (kfp 2.17.x).
    """
    from kfp import local

    named_output_conditions()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    local.init(
        runner=runner if runner is not None else local.SubprocessRunner(use_venv=False),
        pipeline_root=str(Path(pipeline_root).resolve()),
        raise_on_error=True,
    )


def output_parameter_types(pipeline: Any) -> dict[str, dict[str, int]]:
    """Each task's output parameters and their IR types, in every DAG of ``pipeline``.

    Args:
        pipeline: A ``@dsl.pipeline`` function (or anything with a ``pipeline_spec``).

    Returns:
        ``{task name: {output name: ParameterTypeEnum value}}``.
    """
    spec = pipeline.pipeline_spec
    dags = [spec.root.dag, *(c.dag for c in spec.components.values() if c.HasField("dag"))]
    types: dict[str, dict[str, int]] = {}
    for dag in dags:
        for name, task in dag.tasks.items():
            outputs = spec.components[task.component_ref.name].output_definitions.parameters
            types[name] = {key: value.parameter_type for key, value in outputs.items()}
    return types


def _read_task(task_dir: Path, parameter_types: dict[str, int] | None = None) -> TaskResult:
    """What one task wrote: artifacts, their metadata and output parameters.

    A returned value (a single ``Output`` or a NamedTuple's fields) is in
    ``executor_output.json``'s ``parameterValues``; a ``dsl.OutputPath`` parameter is a file
    named after the output, which kfp.local leaves there: read as kfp reads it (a string as
    text, anything else as JSON) when ``parameter_types`` names it.
    """
    from kfp.local import executor_output_utils

    types = parameter_types or {}
    result = TaskResult(name=task_dir.name)
    for path in sorted(task_dir.iterdir()):
        if path.name == "executor_output.json":
            continue
        if path.name in types and path.is_file():
            result.parameters[path.name] = executor_output_utils.special_dsl_outputpath_read(
                path.name, str(path), types[path.name]
            )
        else:
            result.artifacts[path.name] = path
    output_file = task_dir / "executor_output.json"
    if output_file.is_file():
        data = json.loads(output_file.read_text())
        for name, entry in data.get("artifacts", {}).items():
            for artifact in entry.get("artifacts", []):
                result.metadata[name] = artifact.get("metadata", {})
                result.artifacts.setdefault(name, Path(artifact["uri"]))
        result.parameters.update(data.get("parameterValues", {}))
    return result


def run_log_folder(log_file: Path) -> Path:
    """A new folder for one run's logs, next to ``log_file``: ``<stem>-<UTC time>[-n]``.

    Args:
        log_file: The log the caller names (e.g. ``logs/training.log``); its stem names
            the run's folder and its name the whole run's log in it.

    Returns:
        The created folder; an earlier run's folder is never reused.
    """
    parent = Path(log_file).parent
    parent.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    for n in range(1, 1000):
        folder = parent / (f"{Path(log_file).stem}-{stamp}" + (f"-{n}" if n > 1 else ""))
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return folder
    raise FileExistsError(f"Too many runs started in one second under {parent}")


def check_arguments(pipeline: Any, arguments: dict[str, Any]) -> dict[str, Any]:
    """``arguments`` checked against ``pipeline``'s inputs and the steps' own rules, all at once.

    The same checks ``planets-mlops run`` makes before submitting: unknown names (with the
    closest input named), types, required inputs, and every knob's range (``train_epochs=-3``,
    ``label_fraction`` outside 0..1), so a bad value fails before the first step runs.

    Args:
        pipeline: A ``@dsl.pipeline`` function.
        arguments: Pipeline parameters.

    Returns:
        The arguments, coerced to the input types.

    Raises:
        InvalidParameterError: One bad argument; ``ParameterErrors`` lists several.
    """
    from google.protobuf import json_format

    from planets_mlops.app.cli import arguments as cli_arguments

    spec = json_format.MessageToDict(pipeline.pipeline_spec)
    return cli_arguments.validate(arguments, spec, pipeline.name)


def _failure(progress: ProgressLog, folder: Path, log_file: Path) -> StepFailedError | None:
    if not progress.failed:
        return None
    task = progress.failed[0]
    task_log = folder / f"{task}.log"
    text = task_log.read_text() if task_log.is_file() else ""
    lines = [line.rstrip() for line in text.splitlines() if line.strip() and not _FINISHED.search(line)]
    tail = textwrap.dedent("\n".join(lines[-TAIL_LINES:])).splitlines()
    return StepFailedError(task, step_error(text), tail, task_log, log_file)


def run_local(
    pipeline: Callable,
    pipeline_root: Path,
    log_file: Path | None = None,
    runner: Any = None,
    **arguments: Any,
) -> LocalRun:
    """Check the arguments, run ``pipeline`` under ``kfp.local`` and index what each task wrote.

    Args:
        pipeline: a ``@dsl.pipeline`` function.
        pipeline_root: folder receiving one sub-folder per run.
        log_file: when given, names the run's log: kfp.local's full output goes to a new
            folder ``<parent>/<stem>-<UTC time>/`` (``<name>`` for the whole run, one
            ``<task>.log`` per step; :attr:`LocalRun.log_file` is the whole run's) and the
            terminal shows one progress line per step; otherwise everything goes to stdout.
        runner: the kfp.local runner (default: SubprocessRunner in this environment). A
            pipeline that always trains gets its training child started with the run
            (:mod:`planets_mlops.warm_trainer`), in a container under ``DockerRunner``.
        **arguments: pipeline parameters.

    Raises:
        InvalidParameterError: A bad argument (before any step runs).
        StepFailedError: A step failed (with a log): its error, log tail and log path.
    """
    arguments = check_arguments(pipeline, arguments)
    init_local(pipeline_root, runner)
    with _warm_training(runner, pipeline, pipeline_root):
        return _run(pipeline, pipeline_root, log_file, arguments)


def _warm_training(runner: Any, pipeline: Any, pipeline_root: Path) -> contextlib.AbstractContextManager:
    """The training step's child, started with the run where every run trains (:func:`trains`).

    Under the subprocess runner a process of this environment
    (:func:`planets_mlops.warm_trainer.warm_trainer`); under ``DockerRunner`` a container of
    the training image (:func:`planets_mlops.app.containers.warm_training_container`).
    """
    if not trains(pipeline):
        return contextlib.nullcontext()
    if runner is None:
        return warm_trainer()
    from kfp import local

    if isinstance(runner, local.DockerRunner):
        from planets_mlops.app.containers import warm_training_container

        return warm_training_container(runner, pipeline, pipeline_root)
    return contextlib.nullcontext()


def trains(pipeline: Any) -> bool:
    """Whether every run of ``pipeline`` trains: its top level has a training step.

    Such a run starts the step's TensorFlow child first (:mod:`planets_mlops.warm_trainer`).
    Where training is conditional (``retraining`` trains only on new labels), the child's
    import would be wasted on the runs that do not train, so none is started.
    """
    from planets_mlops.app.containers import training_component

    return training_component(pipeline) is not None


def _run(
    pipeline: Callable, pipeline_root: Path, log_file: Path | None, arguments: dict[str, Any]
) -> LocalRun:
    root = Path(pipeline_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    before = set(root.iterdir())
    started = time.monotonic()
    durations: dict[str, float] = {}
    if log_file is None:
        pipeline(**arguments)
    else:
        folder = run_log_folder(Path(log_file))
        log_file = folder / Path(log_file).name
        with open(log_file, "w") as log:
            progress = ProgressLog(log, sys.stdout, task_logs=folder)
            try:
                with contextlib.redirect_stdout(progress), warnings.catch_warnings():
                    # kfp.local warns that images and cluster settings are not used locally:
                    # expected here, and it would bury the progress lines.
                    warnings.simplefilter("ignore")
                    pipeline(**arguments)
            except RuntimeError:
                progress.close()
                failure = _failure(progress, folder, log_file)
                if failure is None:
                    raise
                # kfp.local's own traceback says only "Inner task failed", in colour codes.
                raise failure from None
            finally:
                durations = progress.durations
                if not progress.closed:
                    progress.close()
    seconds = time.monotonic() - started
    new = sorted(set(root.iterdir()) - before, key=lambda p: p.stat().st_mtime)
    run = LocalRun(root=new[-1] if new else root, seconds=seconds, log_file=log_file)
    types = output_parameter_types(pipeline) if hasattr(pipeline, "pipeline_spec") else {}
    for task_dir in sorted(p for p in run.root.iterdir() if p.is_dir()):
        run.tasks[task_dir.name] = _read_task(task_dir, types.get(task_dir.name))
        run.tasks[task_dir.name].seconds = durations.get(task_dir.name, 0.0)
    return run
