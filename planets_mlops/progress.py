"""Progress of long work as plain "n of N" lines: epochs, label imports, uploads, fetches.

A step prints ``progress: epoch 3 of 10 (loss 0.512, accuracy 0.81)`` on stdout, which is
what a pod's log shows. The local runner (:class:`planets_mlops.app.local.ProgressLog`)
recognises these lines and shows them in a terminal as a live bar, or as the same plain lines
when its output is not a terminal. Nothing here depends on a terminal library.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TextIO

PREFIX = "progress: "
_LINE = re.compile(r"progress: (?P<what>.+?) (?P<n>\d+) of (?P<total>\d+)(?: \((?P<figures>.*)\))?\s*$")


@dataclass(frozen=True)
class ProgressLine:
    """One parsed progress line.

    Attributes:
        what: What is counted (``"epoch"``, ``"image fetched"``...).
        n: How many are done.
        total: How many there are.
        figures: The rest, as written (``"loss 0.512, accuracy 0.81"``), or ``""``.
    """

    what: str
    n: int
    total: int
    figures: str = ""


def format_line(what: str, n: int, total: int, figures: Mapping[str, float | int | str] | None = None) -> str:
    """``progress: <what> <n> of <total> (<name> <value>, ...)`` (floats to 4 significant digits).

    Args:
        what: What is counted, singular (``"epoch"``).
        n: How many are done.
        total: How many there are.
        figures: Name -> value shown after the count (e.g. an epoch's metrics).

    Returns:
        The line, without a line break.
    """
    text = f"{PREFIX}{what} {n} of {total}"
    if figures:
        shown = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in figures.items())
        text += f" ({shown})"
    return text


def parse_line(line: str) -> ProgressLine | None:
    """The progress line in ``line`` (which may carry a log prefix or indent), or None."""
    match = _LINE.search(line)
    if match is None:
        return None
    return ProgressLine(match["what"], int(match["n"]), int(match["total"]), match["figures"] or "")


class Progress:
    """Counts work done and prints a progress line when due.

    Every item is printed when there are at most ``every_item_up_to`` of them; otherwise the
    first, the last, and one per tenth of the total, so a pod's log gets about a dozen lines
    whatever the size.

    Args:
        what: What is counted (``"image fetched"``).
        total: How many there are.
        out: Where lines go (default: stdout at the time of each line, flushed).
        every_item_up_to: Below this total, every item gets a line.
    """

    def __init__(self, what: str, total: int, out: TextIO | None = None, every_item_up_to: int = 20) -> None:
        self.what = what
        self.total = total
        self.out = out
        self.every_item_up_to = every_item_up_to
        self.done = 0
        self.started = time.monotonic()
        self._shown = -1

    def _due(self) -> bool:
        if self.total <= self.every_item_up_to or self.done in (1, self.total):
            return True
        return self.done * 10 // self.total > self._shown * 10 // max(self.total, 1)

    def step(self, count: int = 1, /, **figures: float | int | str) -> None:
        """Add ``count`` done items; print a line when due (``figures`` are shown in it)."""
        self.done = min(self.done + count, self.total) if self.total else self.done + count
        if self.total and self._due():
            self._shown = self.done
            out = self.out or sys.stdout
            out.write(format_line(self.what, self.done, self.total, figures) + "\n")
            out.flush()
