"""Ending a process whose work is written, without the interpreter's teardown.

Tearing down what a task imported (TensorFlow above all: 1.4-3.4 s measured in the training
task; DVC, Matplotlib, ONNX Runtime 0.2-0.5 s) writes nothing. The training child
(:mod:`planets_mlops.train`) and every heavy KFP task (``planets_mlops.components.task_exit``)
end through :func:`end_now` once their outputs are on disk. Standard library only: the
training child must not import KFP, a task must not import TensorFlow to end.
"""

from __future__ import annotations

import logging
import os
import sys


def flush_output() -> None:
    """Flush this process's ``sys.stdout`` and ``sys.stderr`` (a closed or broken one is skipped)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken stream: nothing more to save
            pass


def end_now(code: int) -> None:
    """Flush what this process logged and printed, then end it with ``code`` at once."""
    logging.shutdown()
    flush_output()
    os._exit(code)
