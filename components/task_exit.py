"""End a KFP task's process as soon as its outputs are written, without the interpreter's teardown.

A component runs as ``python -m kfp.dsl.executor_main ... --executor_input JSON``; once the
executor has written its output file (``executor_input.outputs.outputFile``), every output
of the task is on disk and the process has nothing left to do, but its interpreter still
tears down every module it imported (DVC, Matplotlib, ONNX Runtime, BentoML...) before it
exits: 0.2-0.5 s a task measured under kfp.local (pull-data 0.26 s, prepare-dataset 0.53 s,
evaluate-model 0.20 s), during which the next task cannot start.

:func:`end_when_written`, called first in a component's body (KFP runs the function's source
alone, without its module's imports, so it must be called there), ends the process at exit with
``os._exit(0)`` only when the output file was written by this process (it did not exist or
changed since the call) and no exception went uncaught; otherwise the exit is Python's own,
with its status. Outside a KFP executor (a component's ``python_func`` in a test) it does
nothing.
"""

from __future__ import annotations

import atexit
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from planets_mlops.quick_exit import end_now


def executor_output_file(argv: Sequence[str]) -> Path | None:
    """The executor output file named by ``--executor_input`` in ``argv``, or None."""
    for index, argument in enumerate(argv):
        if argument == "--executor_input" and index + 1 < len(argv):
            text = argv[index + 1]
        elif argument.startswith("--executor_input="):
            text = argument.partition("=")[2]
        else:
            continue
        try:
            output = json.loads(text).get("outputs", {}).get("outputFile", "")
        except (ValueError, AttributeError):
            return None
        return Path(output) if output else None
    return None


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def end_when_written(argv: Sequence[str] | None = None) -> bool:
    """At this process's exit, end it at once if it wrote its KFP executor output file.

    Args:
        argv: The process's arguments (default ``sys.argv``).

    Returns:
        Whether the quick exit was armed (a KFP executor process).
    """
    output_file = executor_output_file(sys.argv if argv is None else argv)
    if output_file is None:
        return False
    before = _stamp(output_file)

    def end() -> None:
        if getattr(sys, "last_value", None) is not None:  # an uncaught exception: Python's exit
            return
        written = _stamp(output_file)
        if written is None or written == before:
            return
        end_now(0)

    atexit.register(end)
    return True
