"""JSON from outside the process, parsed within bounds: nesting depth and number size.

``json.loads`` trusts its input in two ways that a hostile line breaks: nesting (a line of
100,000 ``[`` raises ``RecursionError``, which no reader catches) and numbers (a 400-digit
integer parses, then ``float()`` of it raises ``OverflowError``; ``1e400`` parses as
infinity). Every reader of JSON that someone else wrote (prediction records, the
reference profile, the drift summary, inbox items) parses it with :func:`loads`, which
refuses both with a :class:`JsonError` (a :class:`planets_mlops.errors.DataError`), so the
reader skips and counts the line or object like any other malformed one.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np

from planets_mlops.errors import DataError

# Deepest nesting any of the project's own documents has is 4 (a summary's columns); 32
# leaves room for growth and keeps the parser's recursion far from Python's limit.
MAX_DEPTH = 32
# Longest number literal: a float64 needs 17 significant digits and an exponent, an int64
# 20 characters; 40 leaves room for a long zero-padded fraction.
MAX_NUMBER_CHARS = 40
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


class JsonError(DataError):
    """Outside JSON refused: not JSON, nested too deep, or a number out of range.

    Attributes:
        reason: A short, stable reason (a skip counter's key): ``not JSON``, ``JSON nested
            too deep`` or ``JSON number out of range``.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def nesting_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in ``text`` (strings ignored), without parsing it."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    if not brackets:
        return 0
    codes = np.frombuffer(brackets.encode("ascii"), dtype=np.uint8)
    steps = np.where((codes == ord("[")) | (codes == ord("{")), 1, -1)
    return int(np.cumsum(steps).max())


def _number(literal: str) -> str:
    if len(literal) > MAX_NUMBER_CHARS:
        raise OverflowError(f"a number of {len(literal)} characters (at most {MAX_NUMBER_CHARS})")
    return literal


def _int(literal: str) -> int:
    return int(_number(literal))


def _float(literal: str) -> float:
    value = float(_number(literal))
    if not math.isfinite(value):
        raise OverflowError(f"{literal} is out of the range of a float")
    return value


def loads(data: bytes | str, max_depth: int = MAX_DEPTH, allow_nan: bool = False) -> Any:
    """Parse outside JSON within bounds.

    Args:
        data: The JSON text (UTF-8 bytes or str).
        max_depth: Deepest nesting of arrays and objects accepted.
        allow_nan: Accept the ``NaN``/``Infinity`` constants that Python's own ``json.dumps``
            writes (the drift summary has NaN p-values); refused otherwise.

    Returns:
        The parsed value.

    Raises:
        JsonError: not UTF-8 or not JSON, nested deeper than ``max_depth``, or a number of
            more than :data:`MAX_NUMBER_CHARS` characters or out of a float's range.
    """
    try:
        text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
    except UnicodeDecodeError as exc:
        raise JsonError("not JSON", f"not UTF-8 ({exc})") from exc
    depth = nesting_depth(text)
    if depth > max_depth:
        raise JsonError("JSON nested too deep", f"{depth} levels, at most {max_depth}")

    def constant(name: str) -> float:
        if allow_nan:
            return float(name)
        raise OverflowError(f"{name} is not a finite number")

    try:
        return json.loads(text, parse_int=_int, parse_float=_float, parse_constant=constant)
    except OverflowError as exc:
        raise JsonError("JSON number out of range", str(exc)) from exc
    except RecursionError as exc:  # depth is checked above; kept as a last guard
        raise JsonError("JSON nested too deep", str(exc)) from exc
    except ValueError as exc:
        raise JsonError("not JSON", str(exc)) from exc
