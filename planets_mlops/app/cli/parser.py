"""The argument parser every command and tool uses: no prefixes, and "did you mean".

argparse takes ``--epoch 3`` as ``--epochs 3`` by default (``allow_abbrev``), so a typo
silently sets another option, or an option a later version adds changes what an old
command line means. :class:`Parser` refuses prefixes, and a usage error for an unknown
option or command names the closest valid ones.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from typing import Any, NoReturn

from planets_mlops.errors import did_you_mean

_UNRECOGNISED = re.compile(r"^unrecognized arguments: (.*)$")
_INVALID_CHOICE = re.compile(r"invalid choice: '([^']*)' \(choose from (.*)\)$")


def _suggest(word: str, options: list[str]) -> str:
    # An option the word begins (what argparse's prefix matching would have taken), else the closest.
    prefixed = [o for o in options if o.startswith(word)]
    if prefixed:
        return " Did you mean " + " or ".join(repr(o) for o in sorted(prefixed)[:3]) + "?"
    return did_you_mean(word, options)


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` with ``allow_abbrev=False`` and suggestions in usage errors.

    Sub-parsers made with ``add_subparsers`` are of this class too (argparse's default).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self._argv: list[str] = []

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        """As argparse's; remembers the arguments so an error can find the command typed."""
        if args is not None:
            self._argv = list(args)
        return super().parse_known_args(args, namespace)

    def _command_parser(self) -> argparse.ArgumentParser:
        # The sub-parser of the command typed (options are checked against its own), else self.
        parser: argparse.ArgumentParser = self
        for word in self._argv:
            subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
            if not subparsers or word.startswith("-"):
                continue
            chosen = subparsers[0].choices.get(word)
            if chosen is None:
                break
            parser = chosen
        return parser

    def error(self, message: str) -> NoReturn:
        """Print usage and ``message`` (plus the closest valid names), exit 2."""
        if match := _UNRECOGNISED.match(message):
            parser = self._command_parser()
            options = [o for a in parser._actions for o in a.option_strings if o.startswith("--")]
            hints = [
                f"{word.split('=', 1)[0]}:{_suggest(word.split('=', 1)[0], options)}"
                for word in match.group(1).split()
                if word.startswith("-") and _suggest(word.split("=", 1)[0], options)
            ]
            if hints:
                message += " (" + "; ".join(hints) + ")"
            parser.exit(2, f"{parser.format_usage()}{parser.prog}: error: {message}\n")
        if match := _INVALID_CHOICE.search(message):
            choices = re.findall(r"'([^']*)'", match.group(2))
            message += did_you_mean(match.group(1), choices)
        super().error(message)
