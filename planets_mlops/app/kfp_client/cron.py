"""KFP cron expressions, checked locally before any request.

KFP schedules with robfig/cron: six fields, seconds first, or a ``@`` descriptor.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from planets_mlops.errors import InvalidParameterError

_CRON_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("second", 0, 59, {}),
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day-of-month", 1, 31, {}),
    (
        "month",
        1,
        12,
        {
            m: i + 1
            for i, m in enumerate(
                [
                    "JAN",
                    "FEB",
                    "MAR",
                    "APR",
                    "MAY",
                    "JUN",
                    "JUL",
                    "AUG",
                    "SEP",
                    "OCT",
                    "NOV",
                    "DEC",
                ]
            )
        },
    ),
    (
        "day-of-week",
        0,
        6,
        {d: i for i, d in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])},
    ),
)
_CRON_DESCRIPTORS = {
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
}
_CRON_HELP = (
    "6 space-separated fields: second minute hour day-of-month month day-of-week (robfig/cron, as KFP uses)"
)
_CRON_FIX = (
    "e.g. '0 0 3 * * *' runs daily at 03:00:00, '0 30 2 * * MON' Mondays at "
    "02:30. A 5-field crontab needs a leading seconds field: '0 ' + it."
)


def validate_cron(expr: str) -> str:
    """Check a KFP cron expression locally; returns it with whitespace normalised.

    Raises:
        InvalidParameterError: Wrong number of fields, or a field out of range.
    """
    text = " ".join(str(expr).split())
    if text in _CRON_DESCRIPTORS:
        return text
    if text.startswith("@every "):
        if re.fullmatch(r"@every (\d+(\.\d+)?(ns|us|ms|s|m|h))+", text):
            return text
        raise InvalidParameterError("--cron", expr, "@every DURATION like @every 6h30m", _CRON_FIX)
    parts = text.split(" ")
    if len(parts) != 6:
        raise InvalidParameterError("--cron", expr, f"{_CRON_HELP}; got {len(parts)} field(s)", _CRON_FIX)
    for part, (name, low, high, names) in zip(parts, _CRON_FIELDS, strict=True):
        for item in part.split(","):
            if not _cron_item_ok(item, low, high, names, name):
                raise InvalidParameterError(
                    f"--cron {name} field",
                    part,
                    f"*, ?, N, N-M, */S or N-M/S with N, M in {low}-{high}",
                    _CRON_FIX,
                )
    return text


def _cron_item_ok(item: str, low: int, high: int, names: Mapping[str, int], field_name: str) -> bool:
    base, slash, step = item.partition("/")
    if slash and not (step.isdigit() and int(step) > 0):
        return False
    if base in ("*", "?"):
        return base == "*" or field_name in ("day-of-month", "day-of-week")

    def value(token: str) -> int | None:
        if token.upper() in names:
            return names[token.upper()]
        return int(token) if token.isdigit() else None

    start_s, dash, end_s = base.partition("-")
    start = value(start_s)
    end = value(end_s) if dash else start
    if start is None or end is None:
        return False
    return low <= start <= end <= high
