"""What the CLI prints: exit codes, progress on stderr, tables, error reports.

Results go to stdout, everything else to stderr, so stdout stays parseable.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_CONNECTION, EXIT_NOT_FOUND = 0, 1, 2, 3, 4


def say(message: str) -> None:
    """Progress line on stderr (stdout stays parseable)."""
    print(f"[planets-mlops] {message}", file=sys.stderr, flush=True)


def print_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Left-aligned columns on stdout, two spaces apart."""
    table = [tuple(header), *map(tuple, rows)]
    widths = [max(len(str(r[i])) for r in table) for i in range(len(header))]
    for r in table:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def report_error(args: argparse.Namespace, exc: BaseException, code: int, unexpected: bool = False) -> int:
    """Print ``exc`` as one ``error:`` line (plus the traceback with ``-v``); returns ``code``.

    The token and cookies, from flags or the environment, never reach the text.
    """
    text = str(exc)
    with_secrets = [getattr(args, "token", None), getattr(args, "cookies", None)]
    with_secrets += [os.environ.get("KFP_TOKEN"), os.environ.get("KFP_COOKIES")]
    for secret in with_secrets:
        if secret:
            text = text.replace(secret, "***")
    prefix = f"unexpected {type(exc).__name__}: " if unexpected else ""
    print(f"error: {prefix}{text}", file=sys.stderr)
    if getattr(args, "verbose", False):
        traceback.print_exception(exc, file=sys.stderr)
    return code
