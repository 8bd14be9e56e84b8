"""What the CLI prints: exit codes, progress on stderr, tables, error reports.

Results go to stdout, everything else to stderr, so stdout stays parseable. Nothing
printed carries the KFP token or cookies: error lines, tracebacks (with ``-v``) and log
records are scrubbed of every form :func:`~planets_mlops.app.kfp_client.secret_values`
lists, whether the secret came from a flag or the environment.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from collections.abc import Sequence

from planets_mlops.app.kfp_client.settings import scrub_text, secret_values

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_CONNECTION, EXIT_NOT_FOUND = 0, 1, 2, 3, 4


def say(message: str) -> None:
    """Progress line on stderr (stdout stays parseable)."""
    print(f"[planets-mlops] {message}", file=sys.stderr, flush=True)


def wants_json(args: argparse.Namespace) -> bool:
    """True with ``--output json`` (or ``status --json``)."""
    return getattr(args, "output", "text") == "json" or bool(getattr(args, "json", False))


def emit(args: argparse.Namespace, lines: Sequence[str], data: object) -> None:
    """The command's results on stdout: ``lines`` as text, or ``data`` as one JSON document."""
    if wants_json(args):
        print(json.dumps(data, indent=2))
    else:
        for line in lines:
            print(line)


def print_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Left-aligned columns on stdout, two spaces apart."""
    table = [tuple(header), *map(tuple, rows)]
    widths = [max(len(str(r[i])) for r in table) for i in range(len(header))]
    for r in table:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def secrets_of(args: argparse.Namespace) -> list[str]:
    """The secrets this invocation may print by accident: flags and environment."""
    return secret_values(
        getattr(args, "token", None),
        getattr(args, "cookies", None),
        os.environ.get("KFP_TOKEN"),
        os.environ.get("KFP_COOKIES"),
    )


class ScrubSecrets(logging.Filter):
    """A handler filter that removes secrets from a record's message and traceback.

    Args:
        secrets: The forms to remove, from :func:`secrets_of`.
    """

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite ``record`` in place, scrubbed; always lets it through."""
        record.msg = scrub_text(record.getMessage(), self.secrets)
        record.args = None
        if record.exc_info:
            text = record.exc_text or logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
            record.exc_text = text
        if record.exc_text:
            record.exc_text = scrub_text(record.exc_text, self.secrets)
        if record.stack_info:
            record.stack_info = scrub_text(record.stack_info, self.secrets)
        return True


def log_handler(args: argparse.Namespace) -> logging.Handler:
    """A stderr handler for the root logger, its records scrubbed of secrets."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(ScrubSecrets(secrets_of(args)))
    return handler


def report_error(args: argparse.Namespace, exc: BaseException, code: int, unexpected: bool = False) -> int:
    """Print ``exc`` as one ``error:`` line (plus the traceback with ``-v``); returns ``code``.

    The token and cookies, from flags or the environment, never reach the text: the
    traceback (chained causes included, which may quote a server's answer) is scrubbed too.
    """
    secrets = secrets_of(args)
    prefix = f"unexpected {type(exc).__name__}: " if unexpected else ""
    print(f"error: {prefix}{scrub_text(str(exc), secrets)}", file=sys.stderr)
    if getattr(args, "verbose", False):
        print(scrub_text("".join(traceback.format_exception(exc)), secrets), end="", file=sys.stderr)
    return code
