"""The drift summary: the JSON ``detect_drift`` writes and ``raise_alert`` reads.

Its format (:data:`SUMMARY_FORMAT`), the verdicts it carries and its Markdown live here, in
a module of their own, so that the alert step reads the drift step's output without
importing the drift step (:meth:`planets_mlops.monitoring.drift.DriftResult.summary` writes
it).
"""

from __future__ import annotations

from typing import Any

DRIFT = "drift"
NO_DRIFT = "no drift"
NOT_ENOUGH_DATA = "not enough data"
VERDICTS = (DRIFT, NO_DRIFT, NOT_ENOUGH_DATA)
SUMMARY_FORMAT = "planets-drift/1"


def format_p(value: float) -> str:
    """A p-value as the verdicts show it: scientific below 0.001."""
    return f"{value:.2e}" if value < 1e-3 else f"{value:.3f}"


def summary_markdown(summary: dict[str, Any]) -> str:
    """A drift summary as Markdown: verdict, window, evidence.

    Args:
        summary: The summary ``detect_drift`` writes
            (:meth:`planets_mlops.monitoring.drift.DriftResult.summary`).

    Returns:
        The verdict, the window, the tests and the per-column evidence, most drifted first.
    """
    window = summary["window"]
    params = summary["params"]
    lines = [
        f"# Drift check: **{summary['verdict'].upper()}**",
        "",
        summary["reason"],
        "",
        f"- model version: `{window['model_version']}`",
        f"- window: {window['start']} to {window['end']} (UTC), {summary['records']} records in "
        f"{window['objects']} objects"
        + (
            f" (a uniform sample of the window's {window.get('seen', -1)} records, across all its hours)"
            if window["truncated"]
            else ""
        ),
        f"- reference: {summary['reference_records']} validation images",
        f"- tests: {params['numeric_test']} per numeric column, {params['prediction_test']} on the "
        f"predicted class; a column drifts below p = {summary['threshold']:.2g} "
        f"(alpha {params['alpha']} / {len(summary['columns'])} columns); drift when at least "
        f"{params['drift_share']:.0%} of the columns drift",
    ]
    if window["skipped"]:
        skipped = ", ".join(f"{count} {reason}" for reason, count in sorted(window["skipped"].items()))
        lines.append(f"- skipped while reading: {skipped}")
    lines += [f"- note: {note}" for note in summary["notes"]]
    if summary["columns"]:
        lines += ["", "| group | column | statistic | p-value | drifted |", "|---|---|---|---|---|"]
        ordered = sorted(summary["columns"], key=lambda c: (not c["drifted"], c["p_value"]))
        for c in ordered:
            mark = "**yes**" if c["drifted"] else "no"
            unseen = "inf (a class the reference never predicted)"
            statistic = unseen if c["statistic"] is None else f"{c['statistic']:.3f}"
            p_value = format_p(c["p_value"])
            lines.append(f"| {c['group']} | {c['column']} | {statistic} | {p_value} | {mark} |")
    return "\n".join(lines) + "\n"
