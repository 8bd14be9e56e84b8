"""What the ``monitoring`` pipeline does about drift: the alert record and the actions.

The alert (Markdown, for the KFP UI) holds the evidence of the drift check, the window and
the model version, and one line per action with why it was or was not taken. Actions, each
switched by a parameter (:class:`~planets_mlops.knobs.AlertParams`):

- ``notify``: POST the alert as JSON to a webhook (its URL comes from a Kubernetes Secret);
- ``push_to_label_studio``: the production inbox becomes Label Studio tasks. Prediction
  records hold no image bytes; what can be labelled is what the service's inbox kept (the
  inputs its guard rejected or it was unsure of), so that is what is pushed;
- ``start_retraining``: a run of the ``retraining`` pipeline, submitted through the KFP API.

A failed action is recorded as failed, with the error, and the others still run: the
alert must reach a person even when one channel is down.
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

from planets_mlops.errors import DataError, InvalidParameterError, NotFoundError, PlanetsError
from planets_mlops.knobs import AlertParams
from planets_mlops.monitoring.drift import DRIFT, SUMMARY_FORMAT, summary_markdown
from planets_mlops.monitoring.records import read_json_file

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
        return values

    def to_json(self) -> str:
        """The decision, the actions and the drift summary as JSON."""
        return json.dumps(
            {
                "decision": self.decision(),
                "actions": [asdict(a) for a in self.actions],
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


KFP_API = "/apis/v2beta1"
IN_CLUSTER_KFP = "http://ml-pipeline.kubeflow.svc.cluster.local:8888"
SA_TOKEN_PATH = "/var/run/secrets/kubeflow/pipelines/token"
MAX_ANSWER_BYTES = 8 * 1024 * 1024


class KfpApi:
    """The few calls of the KFP v2beta1 REST API that submit a run, with bounded reads.

    ``kfp.Client`` cannot be imported inside a running task (the SDK's runtime mode leaves
    the client out), and the application's client (``planets_mlops.app.kfp_client``) sits
    above the components, so the alert step speaks the REST API itself.

    Args:
        host: The API's base URL (in a cluster: the ``ml-pipeline`` service).
        token: Bearer token; empty: none (single-user Kubeflow).
        timeout: Seconds per call.
    """

    def __init__(self, host: str, token: str = "", timeout: float = 10.0) -> None:
        self.host = host.rstrip("/")
        self.token = token
        self.timeout = timeout

    def call(self, method: str, path: str, query: Mapping[str, str] | None = None, body: Any = None) -> Any:
        """One API call; the parsed JSON answer.

        Raises:
            planets_mlops.errors.PlanetsError: an error status or no answer.
        """
        from urllib.parse import urlencode

        url = f"{self.host}{KFP_API}{path}" + (f"?{urlencode(query)}" if query else "")
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:  # noqa: S310 - http(s) host
                return json.loads(answer.read(MAX_ANSWER_BYTES) or b"{}")
        except urllib.error.HTTPError as exc:
            raise PlanetsError(f"KFP API {method} {path} answered HTTP {exc.code}") from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise PlanetsError(f"KFP API {method} {path} failed: {getattr(exc, 'reason', exc)}") from exc

    def _named(self, path: str, key: str, name: str) -> list[dict[str, Any]]:
        predicate = {"key": "display_name", "operation": "EQUALS", "string_value": name}
        answer = self.call(
            "GET", path, {"filter": json.dumps({"predicates": [predicate]}), "page_size": "100"}
        )
        return [item for item in answer.get(key) or [] if item.get("display_name") == name]

    def start_run(
        self, pipeline: str, version: str, experiment: str, params: Mapping[str, Any], name: str
    ) -> str:
        """Submit a run of an uploaded pipeline version; returns the run's id.

        Args:
            pipeline: The pipeline's name (as ``planets-mlops upload`` names it).
            version: Its version name; empty: the newest version.
            experiment: Experiment of the run (made if missing).
            params: The run's arguments.
            name: The run's name.

        Raises:
            planets_mlops.errors.NotFoundError: no such pipeline or version.
        """
        pipelines = self._named("/pipelines", "pipelines", pipeline)
        if not pipelines:
            raise NotFoundError(f"pipeline {pipeline!r} is not uploaded; run `planets-mlops upload` first.")
        pipeline_id = pipelines[0]["pipeline_id"]
        listed = self.call("GET", f"/pipelines/{pipeline_id}/versions", {"page_size": "100"})
        versions = listed.get("pipeline_versions") or []
        if version:
            versions = [v for v in versions if v.get("display_name") == version]
        versions = sorted(versions, key=lambda v: str(v.get("created_at", "")), reverse=True)
        if not versions:
            raise NotFoundError(f"pipeline {pipeline!r} has no version {version or '(none uploaded)'!r}.")
        found = self._named("/experiments", "experiments", experiment)
        experiment_id = (
            found[0] if found else self.call("POST", "/experiments", body={"display_name": experiment})
        )["experiment_id"]
        run = self.call(
            "POST",
            "/runs",
            body={
                "display_name": name,
                "experiment_id": experiment_id,
                "pipeline_version_reference": {
                    "pipeline_id": pipeline_id,
                    "pipeline_version_id": versions[0]["pipeline_version_id"],
                },
                "runtime_config": {"parameters": dict(params)},
            },
        )
        return str(run["run_id"])


def kfp_token(env: Mapping[str, str]) -> str:
    """``KFP_TOKEN``, else the projected service-account token file (in a cluster), else empty."""
    if env.get("KFP_TOKEN"):
        return env["KFP_TOKEN"]
    path = Path(env.get("KF_PIPELINES_SA_TOKEN_PATH") or SA_TOKEN_PATH)
    return path.read_text(errors="replace").strip()[:16384] if path.is_file() else ""


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
) -> AlertResult:
    """Record the alert and take the actions ``params`` ask for.

    Args:
        summary: The drift summary (:meth:`planets_mlops.monitoring.drift.DriftResult.summary`).
        params: Which actions to take.
        notify: Posts the alert; None: no webhook is configured.
        push: Turns the inbox into Label Studio tasks; None: no project or inbox given.
        retrain: Submits the retraining run; None: not configured.

    Returns:
        The alert with every action's record. Only a ``drift`` verdict triggers actions.
    """
    summary = dict(summary)
    if summary.get("verdict") != DRIFT:
        why = f"the verdict is {summary.get('verdict')!r}, not drift"
        names = ("notify", "push_to_label_studio", "start_retraining")
        return AlertResult(summary, [ActionRecord(name, False, why) for name in names])
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
        else:
            actions.append(_attempt(name, f"{name} is true and drift was found ({evidence})", action))
    return AlertResult(summary, actions)
