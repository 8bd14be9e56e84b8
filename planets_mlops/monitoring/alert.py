"""What the ``monitoring`` pipeline does about drift: the alert record and the actions.

The alert (Markdown, for the KFP UI) holds the evidence of the drift check, the window and
the model version, and one line per action with why it was or was not taken. Actions, each
switched by a parameter (:class:`~planets_mlops.knobs.AlertParams`):

- ``notify``: POST the alert as JSON to a webhook (its URL comes from a Kubernetes Secret);
- ``push_to_label_studio``: the production inbox becomes Label Studio tasks. Prediction
  records hold no image bytes; what can be labelled is what the service's inbox kept (the
  inputs its guard rejected or it was unsure of), so that is what is pushed;
- ``start_retraining``: a run of the ``retraining`` pipeline, submitted through the KFP API
  (:mod:`planets_mlops.monitoring.trigger`), unless a run for the same data, production
  model and parameters is running or started within the cool-down: the decision and the key
  are in the record.

A failed action is recorded as failed, with the error, and the others still run: the
alert must reach a person even when one channel is down. The step then fails
(:meth:`AlertResult.failed`), so a broken channel shows red in the KFP UI.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from planets_mlops.errors import DataError, InvalidParameterError, PlanetsError
from planets_mlops.knobs import AlertParams
from planets_mlops.monitoring.drift import DRIFT, SUMMARY_FORMAT, summary_markdown
from planets_mlops.monitoring.records import read_json_file
from planets_mlops.monitoring.trigger import (  # noqa: F401 - the alert's KFP API, re-exported
    IN_CLUSTER_KFP,
    SA_TOKEN_PATH,
    KfpApi,
    TriggerDecision,
    kfp_token,
)

log = logging.getLogger(__name__)

MAX_SUMMARY_BYTES = 4 * 1024 * 1024
WEBHOOK_ENV = "MONITORING_WEBHOOK_URL"


@dataclass(frozen=True)
class ActionRecord:
    """One action: whether it was taken, why, and what came of it."""

    action: str
    taken: bool
    why: str
    outcome: str = ""
    failed: bool = False


@dataclass(frozen=True)
class AlertResult:
    """The alert and the actions taken on it."""

    summary: dict[str, Any]
    actions: list[ActionRecord] = field(default_factory=list)
    trigger: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> list[ActionRecord]:
        """The actions that were asked for and failed (or could not be taken)."""
        return [a for a in self.actions if a.failed]

    def decision(self) -> str:
        """One line a person can act on: the verdict, the model and every action's outcome."""
        window = self.summary["window"]
        parts = [
            f"{a.action}: {'FAILED ' + a.outcome if a.failed else a.outcome or 'done'}"
            for a in self.actions
            if a.taken
        ]
        done = "; ".join(parts) if parts else "no action beyond this alert (none was asked for)"
        when = f"{window['start']} to {window['end']}"
        return f"{self.summary['verdict']} for {window['model_version']} ({when}): {done}"

    def to_markdown(self) -> str:
        """The alert record: decision, actions with their reasons, then the evidence."""
        lines = [
            "# Drift alert",
            "",
            f"**Decision:** {self.decision()}",
            "",
            "| action | taken | why | outcome |",
            "|---|---|---|---|",
        ]
        for a in self.actions:
            outcome = f"FAILED: {a.outcome}" if a.failed else a.outcome
            lines.append(f"| {a.action} | {'yes' if a.taken else 'no'} | {a.why} | {outcome} |")
        if self.trigger:
            lines += ["", "Retraining key (one run per key within the cool-down):", ""]
            lines += [f"- {name}: `{value}`" for name, value in self.trigger.items()]
        return (
            "\n".join(lines)
            + "\n\n"
            + summary_markdown(self.summary).replace("# Drift check", "## Drift check", 1)
        )

    def metadata(self) -> dict[str, Any]:
        """Artifact metadata: the decision, and each action's outcome."""
        values: dict[str, Any] = {"decision": self.decision(), "verdict": self.summary["verdict"]}
        for a in self.actions:
            values[f"{a.action}_taken"] = a.taken
            values[f"{a.action}_failed"] = a.failed
        if self.trigger:
            values["retraining_key"] = self.trigger.get("key", "")
        return values

    def to_json(self) -> str:
        """The decision, the actions and the drift summary as JSON."""
        return json.dumps(
            {
                "decision": self.decision(),
                "actions": [asdict(a) for a in self.actions],
                "trigger": self.trigger,
                "summary": self.summary,
            },
            indent=1,
        )


def load_summary(path: Path) -> dict[str, Any]:
    """The drift summary written by ``detect_drift`` (bounded read, format checked).

    Raises:
        planets_mlops.errors.DataError: missing, too large, not JSON or another format.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist: the drift summary of detect_drift is missing.")
    # allow_nan: a summary may hold NaN p-values (json.dumps writes them as NaN).
    data = read_json_file(path, MAX_SUMMARY_BYTES, "a drift summary", allow_nan=True)
    if not isinstance(data, dict) or data.get("format") != SUMMARY_FORMAT:
        raise DataError(f"{path} is not a {SUMMARY_FORMAT} summary.")
    return data


def check_webhook_url(url: str) -> str:
    """``url`` if it is an http(s) URL.

    Raises:
        InvalidParameterError: another scheme (file:, ftp:...) or no host.
    """
    from urllib.parse import urlparse

    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise InvalidParameterError(
            WEBHOOK_ENV, "<hidden>" if parsed.netloc else url, "an http:// or https:// URL",
            "Put the webhook URL in the Secret monitoring-webhook, key url.",
        )  # fmt: skip
    return url


def post_webhook(url: str, payload: Mapping[str, Any], timeout: float) -> str:
    """POST ``payload`` as JSON; returns ``HTTP <status>``. The URL (it may hold a token) is never logged.

    Raises:
        planets_mlops.errors.PlanetsError: no 2xx answer, or no answer within ``timeout``.
    """
    request = urllib.request.Request(
        check_webhook_url(url),
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 - scheme checked above
            answer.read(64 * 1024)
            return f"HTTP {answer.status}"
    except urllib.error.HTTPError as exc:
        raise PlanetsError(f"the webhook answered HTTP {exc.code}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise PlanetsError(f"the webhook did not answer: {reason}") from exc


Action = Callable[[], str]


def _attempt(name: str, why: str, action: Action) -> ActionRecord:
    try:
        return ActionRecord(name, True, why, action())
    except (PlanetsError, OSError, ValueError, RuntimeError) as exc:
        log.error("%s failed: %s", name, exc)
        return ActionRecord(name, True, why, f"{type(exc).__name__}: {exc}", failed=True)


def raise_alert(
    summary: Mapping[str, Any],
    params: AlertParams,
    notify: Action | None = None,
    push: Action | None = None,
    retrain: Action | None = None,
    dedupe: Callable[[], TriggerDecision] | None = None,
    trigger: Mapping[str, Any] | None = None,
) -> AlertResult:
    """Record the alert and take the actions ``params`` ask for.

    Args:
        summary: The drift summary (:meth:`planets_mlops.monitoring.drift.DriftResult.summary`).
        params: Which actions to take.
        notify: Posts the alert; None: no webhook is configured.
        push: Turns the inbox into Label Studio tasks; None: no project or inbox given.
        retrain: Submits the retraining run; None: not configured.
        dedupe: Decides, before ``retrain``, whether a retraining with the same key is
            running or started within the cool-down (then it is skipped, not failed).
        trigger: The retraining key and its parts, for the record.

    Returns:
        The alert with every action's record. Only a ``drift`` verdict triggers actions.
    """
    summary = dict(summary)
    if summary.get("verdict") != DRIFT:
        why = f"the verdict is {summary.get('verdict')!r}, not drift"
        names = ("notify", "push_to_label_studio", "start_retraining")
        return AlertResult(summary, [ActionRecord(name, False, why) for name in names], dict(trigger or {}))
    evidence = "; ".join(f"{c['column']} p={c['p_value']:.2g}" for c in summary["columns"] if c["drifted"])
    actions = []
    plan: list[tuple[str, bool, Action | None, str]] = [
        ("notify", params.notify, notify, f"{WEBHOOK_ENV} (Secret monitoring-webhook, key url) is not set"),
        (
            "push_to_label_studio",
            params.push_to_label_studio,
            push,
            "label_studio_project or inbox_uri is empty",
        ),
        ("start_retraining", params.start_retraining, retrain, "no KFP API is configured"),
    ]
    for name, asked, action, missing in plan:
        if not asked:
            actions.append(ActionRecord(name, False, f"drift found, but {name} is false"))
        elif action is None:
            actions.append(ActionRecord(name, False, f"{name} is true but {missing}", failed=True))
        elif name == "start_retraining" and dedupe is not None:
            actions.append(_deduplicated(name, evidence, action, dedupe))
        else:
            actions.append(_attempt(name, f"{name} is true and drift was found ({evidence})", action))
    return AlertResult(summary, actions, dict(trigger or {}))


def _deduplicated(
    name: str, evidence: str, action: Action, dedupe: Callable[[], TriggerDecision]
) -> ActionRecord:
    try:
        decision = dedupe()
    except (PlanetsError, OSError, ValueError, RuntimeError) as exc:
        log.error("%s: the duplicate check failed: %s", name, exc)
        return ActionRecord(name, True, "drift was found, but the duplicate check failed",
                            f"{type(exc).__name__}: {exc}", failed=True)  # fmt: skip
    if not decision.start:
        log.info("%s skipped: %s", name, decision.why)
        return ActionRecord(name, False, f"drift was found, but {decision.why}", "skipped (duplicate)")
    return _attempt(name, f"{name} is true and drift was found ({evidence}); {decision.why}", action)
