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
alert must reach a person even when one channel is down. Every action is isolated: any
exception it raises (an unusable webhook URL, an answer of another shape from the KFP
API) is recorded, never raised, and every message is scrubbed of the secrets
(:func:`secrets_from_env`: the webhook URL and its parts, the KFP token) before it is
recorded or logged. The step then fails (:meth:`AlertResult.failed`), so a broken channel
shows red in the KFP UI.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from planets_mlops.errors import DataError, InvalidParameterError, PlanetsError
from planets_mlops.knobs import AlertParams
from planets_mlops.monitoring import trigger as triggers
from planets_mlops.monitoring.records import read_json_file
from planets_mlops.monitoring.summary import DRIFT, SUMMARY_FORMAT, summary_markdown
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

    def outcome(self) -> str:
        """The step's answer, :meth:`decision`, once the record is written.

        Raises:
            PlanetsError: an action that was asked for failed (the record is logged first),
                so that a broken channel shows red in the KFP UI.
        """
        if self.failed:
            log.error("%s", self.to_markdown())
            raise PlanetsError(
                "The alert is recorded, but these actions failed: "
                + "; ".join(f"{a.action}: {a.outcome or a.why}" for a in self.failed)
            )
        return self.decision()

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
            WEBHOOK_ENV, f"<hidden> (scheme {parsed.scheme!r})", "an http:// or https:// URL",
            "Put the webhook URL in the Secret monitoring-webhook, key url.",
        )  # fmt: skip
    return url


def webhook_secrets(url: str) -> list[str]:
    """The parts of a webhook URL that must never be shown: the URL, its path, query and user part."""
    from urllib.parse import urlsplit

    parts = [url]
    try:
        split = urlsplit(url)
    except ValueError:
        return parts
    tail = split.path + (f"?{split.query}" if split.query else "")
    parts += [tail, split.path, split.query, split.netloc.rpartition("@")[0]]
    return [part for part in parts if len(part) > 1]


def secrets_from_env(env: Mapping[str, str] | None = None) -> list[str]:
    """What no alert message may show: the webhook URL (and its parts) and the KFP token."""
    env = os.environ if env is None else env
    return [*webhook_secrets(env.get(WEBHOOK_ENV, "")), env.get("KFP_TOKEN", "")]


def scrub(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every secret of at least 2 characters replaced by ``<hidden>``, longest first."""
    for secret in sorted({s for s in secrets if s and len(s) > 1}, key=len, reverse=True):
        text = text.replace(secret, "<hidden>")
    return text


def post_webhook(url: str, payload: Mapping[str, Any], timeout: float) -> str:
    """POST ``payload`` as JSON; returns ``HTTP <status>``. The URL (it may hold a token) is never shown.

    ``timeout`` bounds the whole call (connecting, sending, every read), not each read: the
    call runs on a daemon thread that the step stops waiting for at the deadline.

    Raises:
        planets_mlops.errors.PlanetsError: no 2xx answer, no answer within ``timeout``, or a
            URL the HTTP client refuses (the message never holds the URL or its parts).
    """
    hidden = webhook_secrets(url)
    request = urllib.request.Request(
        check_webhook_url(url),
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    outcome: dict[str, Any] = {}

    def call() -> None:
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 - scheme checked
                answer.read(64 * 1024)
                outcome["status"] = f"HTTP {answer.status}"
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting step, scrubbed there
            outcome["error"] = exc

    worker = threading.Thread(target=call, name="webhook", daemon=True)
    started = time.monotonic()
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise PlanetsError(f"the webhook did not answer within {timeout:g} s (webhook_timeout_s)")
    error = outcome.get("error")
    if error is None:
        return str(outcome["status"])
    if isinstance(error, urllib.error.HTTPError):
        raise PlanetsError(f"the webhook answered HTTP {error.code}") from None
    if isinstance(error, (urllib.error.URLError, OSError)):
        reason = scrub(str(getattr(error, "reason", error)), hidden)
        raise PlanetsError(f"the webhook did not answer: {reason}") from None
    log.debug("webhook call failed after %.1f s", time.monotonic() - started)
    raise PlanetsError(
        f"the webhook call failed: {type(error).__name__}: {scrub(str(error), hidden)}. "
        f"Check the URL in the Secret monitoring-webhook ({WEBHOOK_ENV})."
    ) from None


Action = Callable[[], str]


def _attempt(name: str, why: str, action: Action, secrets: Sequence[str] = ()) -> ActionRecord:
    """Run one action; whatever it raises is its failed record, never the step's crash."""
    try:
        return ActionRecord(name, True, why, scrub(str(action()), secrets))
    except Exception as exc:  # noqa: BLE001 - one action must never lose the alert or the others
        message = scrub(f"{type(exc).__name__}: {exc}", secrets)
        log.error("%s failed: %s", name, message)
        return ActionRecord(name, True, why, message, failed=True)


def _evidence(summary: Mapping[str, Any]) -> str:
    """The drifted columns and their p-values, as one line (columns of another shape are left out)."""
    parts = []
    for column in summary.get("columns") or []:
        if isinstance(column, Mapping) and column.get("drifted"):
            p_value = column.get("p_value")
            shown = f"{p_value:.2g}" if isinstance(p_value, (int, float)) else "?"
            parts.append(f"{column.get('column')} p={shown}")
    return "; ".join(parts)


def raise_alert(
    summary: Mapping[str, Any],
    params: AlertParams,
    notify: Action | None = None,
    push: Action | None = None,
    retrain: Action | None = None,
    dedupe: Callable[[], TriggerDecision] | None = None,
    trigger: Mapping[str, Any] | None = None,
    secrets: Sequence[str] | None = None,
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
        secrets: Text no record or log may show; default :func:`secrets_from_env`.

    Returns:
        The alert with every action's record. Only a ``drift`` verdict triggers actions.
    """
    summary = dict(summary)
    if summary.get("verdict") != DRIFT:
        why = f"the verdict is {summary.get('verdict')!r}, not drift"
        names = ("notify", "push_to_label_studio", "start_retraining")
        return AlertResult(summary, [ActionRecord(name, False, why) for name in names], dict(trigger or {}))
    secrets = secrets_from_env() if secrets is None else secrets
    evidence = _evidence(summary)
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
            actions.append(_deduplicated(name, evidence, action, dedupe, secrets))
        else:
            actions.append(
                _attempt(name, f"{name} is true and drift was found ({evidence})", action, secrets)
            )
    return AlertResult(summary, actions, dict(trigger or {}))


def _deduplicated(
    name: str,
    evidence: str,
    action: Action,
    dedupe: Callable[[], TriggerDecision],
    secrets: Sequence[str] = (),
) -> ActionRecord:
    try:
        decision = dedupe()
    except Exception as exc:  # noqa: BLE001 - one action must never lose the alert or the others
        message = scrub(f"{type(exc).__name__}: {exc}", secrets)
        log.error("%s: the duplicate check failed: %s", name, message)
        return ActionRecord(
            name, True, "drift was found, but the duplicate check failed", message, failed=True
        )
    if not decision.start:
        log.info("%s skipped: %s", name, decision.why)
        return ActionRecord(name, False, f"drift was found, but {decision.why}", "skipped (duplicate)")
    return _attempt(name, f"{name} is true and drift was found ({evidence}); {decision.why}", action, secrets)


@dataclass(frozen=True)
class RetrainingRun:
    """The retraining run an alert may start (the ``retraining_*`` parameters of ``raise_alert``).

    Attributes:
        pipeline: The uploaded retraining pipeline's name.
        version: Its version; empty: the newest.
        arguments: The run's arguments (``data_repo_url``, ``data_rev``, ``data_path``...).
        experiment: The KFP experiment; empty: ``monitoring``.
        service_account: The run's service account; empty: the alert pod's own.
        pipeline_root: The run's pipeline root; empty: the namespace's.
    """

    pipeline: str = "planets-retraining"
    version: str = ""
    arguments: Mapping[str, Any] = field(default_factory=dict)
    experiment: str = ""
    service_account: str = ""
    pipeline_root: str = ""


def alert_on_summary(
    summary_path: Path,
    params: AlertParams,
    retraining: RetrainingRun,
    label_studio_project: str = "",
    inbox_uri: str = "",
    inbox_max_tasks: int = 0,
    env: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> AlertResult:
    """What the ``raise_alert`` component calls: read the drift summary, wire the actions, raise the alert.

    The webhook URL comes from ``MONITORING_WEBHOOK_URL``; Label Studio's from its own
    variables; the KFP API from ``KFP_HOST`` (default: the in-cluster service) with the
    token of :func:`~planets_mlops.monitoring.trigger.kfp_token`, and the run's namespace and
    service account from ``KFP_NAMESPACE`` / ``KFP_RUN_SERVICE_ACCOUNT``
    (:meth:`~planets_mlops.monitoring.trigger.RunTarget.resolve`). A retraining is keyed on
    the data its arguments name and on the window's model version, and started only if no
    run with that key is running or started within the cool-down.

    Args:
        summary_path: The drift summary of ``detect_drift``.
        params: Which actions to take, the webhook's timeout and the cool-down.
        retraining: The retraining run to start.
        label_studio_project: The project the inbox tasks go to; empty: no push.
        inbox_uri: The service's production inbox; empty: no push.
        inbox_max_tasks: Most tasks per push (the hardest); 0: all.
        env: Where the variables are read (default: the process environment).
        now: The time the cool-down is measured from (default: now).

    Returns:
        The alert with every action's record (:meth:`AlertResult.outcome` is the step's answer).

    Raises:
        planets_mlops.errors.DataError: the summary is missing or of another format.
    """
    env = os.environ if env is None else env
    now = now or datetime.now(UTC)
    data = load_summary(Path(summary_path))
    url = env.get(WEBHOOK_ENV, "")

    def post() -> str:
        return post_webhook(
            url, {"text": AlertResult(data).decision(), "summary": data}, params.webhook_timeout_s
        )

    def push() -> str:
        from planets_mlops.inbox import Inbox, open_store
        from planets_mlops.labelstudio.client import LabelStudioClient
        from planets_mlops.labelstudio.inbox_transfer import inbox_to_tasks

        inbox = Inbox(open_store(inbox_uri))
        made = inbox_to_tasks(LabelStudioClient(), label_studio_project, inbox, None, inbox_max_tasks)
        return f"{made.created} task(s) in project {made.project_id}, skipped {dict(made.skipped) or 0}"

    target = triggers.RunTarget.resolve(env, retraining.service_account, retraining.pipeline_root)
    api = KfpApi(env.get("KFP_HOST") or IN_CLUSTER_KFP, kfp_token(env), namespace=target.namespace)
    experiment = retraining.experiment or "monitoring"
    key = None
    if params.start_retraining and data.get("verdict") == DRIFT:
        key = triggers.retraining_key_for(retraining.arguments, str(data["window"]["model_version"]))

    def dedupe() -> TriggerDecision:
        assert key is not None
        runs = api.runs_named_like(api.experiment_id(experiment), key.value)
        return triggers.decide(runs, key, params.retraining_cooldown_hours, now)

    def retrain() -> str:
        assert key is not None
        name = triggers.run_name(key, now)
        run_id = api.start_run(
            retraining.pipeline, retraining.version, experiment, dict(retraining.arguments), name, target
        )
        return f"run {run_id} ({name}, as {target.service_account or 'the default service account'})"

    return raise_alert(
        data,
        params,
        notify=post if url else None,
        push=push if label_studio_project and inbox_uri else None,
        retrain=retrain,
        dedupe=dedupe,
        trigger=key.to_dict() if key else None,
        secrets=secrets_from_env(env),
    )
