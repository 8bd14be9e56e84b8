"""How the alert starts a retraining run: the KFP API, who the run runs as, and de-duplication.

A drift episode lasts hours and an hourly schedule sees it every hour; a batch of new labels
stays new until a run has merged it. So a trigger is keyed by what a retraining would
learn from and against: the data (DVC hash), the production model it must beat, and the
run's parameters. A run with the same key that is still running, or that started within
the cool-down, means "skip"; the decision and the key go into the alert record.

The runs of the retraining pipeline are found through the KFP API itself (the key is in
the run's name), so no other store is needed and a run started by hand with the same key
counts too.

Who the run runs as (:class:`RunTarget`): the service account, pipeline root and namespace
given to the alert, else the alert pod's own (the Kubernetes downward API puts
``spec.serviceAccountName`` and ``metadata.namespace`` into ``KFP_RUN_SERVICE_ACCOUNT`` and
``KFP_NAMESPACE``): a retraining run started by a monitoring run runs as that run did.
"""

from __future__ import annotations

import hashlib
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from planets_mlops.errors import InvalidParameterError, NotFoundError, PlanetsError

log = logging.getLogger(__name__)

KFP_API = "/apis/v2beta1"
IN_CLUSTER_KFP = "http://ml-pipeline.kubeflow.svc.cluster.local:8888"
TOKEN_AUDIENCE = "pipelines.kubeflow.org"
"""The audience the KFP API server's TokenReview asks for (upstream ``DefaultTokenReviewAudience``)."""
SA_TOKEN_PATH = "/var/run/secrets/kubeflow/pipelines/token"
"""Where the projected token of :data:`TOKEN_AUDIENCE` is mounted (the PodDefault of
``kustomize/components/kfp-api-token``), as Kubeflow mounts it in notebooks."""
TOKEN_LABEL = ("planets-mlops.io/kfp-api-token", "true")
"""The pod label that the PodDefault selects: only the alert pod gets the token."""
NAMESPACE_ENV = "KFP_NAMESPACE"
SERVICE_ACCOUNT_ENV = "KFP_RUN_SERVICE_ACCOUNT"
CACHING_OFF_SUFFIX = "-caching-off"
"""Suffix of the no-cache variants ``planets-mlops run/schedule --caching off`` uploads."""
MAX_ANSWER_BYTES = 8 * 1024 * 1024
MAX_PAGES = 50
# States of a run that has not ended (V2beta1RuntimeState).
ACTIVE_STATES = frozenset({"RUNTIME_STATE_UNSPECIFIED", "PENDING", "RUNNING", "PAUSED", "CANCELING"})
RUN_PREFIX = "retraining"


def kfp_token(env: Mapping[str, str]) -> str:
    """``KFP_TOKEN``, else the projected service-account token file (in a cluster), else empty."""
    if env.get("KFP_TOKEN"):
        return env["KFP_TOKEN"]
    path = Path(env.get("KF_PIPELINES_SA_TOKEN_PATH") or SA_TOKEN_PATH)
    return path.read_text(errors="replace").strip()[:16384] if path.is_file() else ""


@dataclass(frozen=True)
class RunTarget:
    """Where a started run runs and as whom; empty fields: the KFP server's defaults.

    Attributes:
        namespace: The profile namespace (multi-user Kubeflow); sent only to a multi-user API.
        service_account: The Kubernetes service account of the run's pods.
        pipeline_root: The run's artifact root (``gs://BUCKET/PREFIX``).
    """

    namespace: str = ""
    service_account: str = ""
    pipeline_root: str = ""

    @classmethod
    def resolve(cls, env: Mapping[str, str], service_account: str = "", pipeline_root: str = "") -> RunTarget:
        """Explicit values win; otherwise the alert pod's own namespace and service account."""
        return cls(
            namespace=env.get(NAMESPACE_ENV, "").strip(),
            service_account=service_account or env.get(SERVICE_ACCOUNT_ENV, "").strip(),
            pipeline_root=pipeline_root.rstrip("/"),
        )


class KfpApi:
    """The few calls of the KFP v2beta1 REST API that submit a run, with bounded reads.

    ``kfp.Client`` cannot be imported inside a running task (the SDK's runtime mode leaves
    the client out), and the application's client (``planets_mlops.app.kfp_client``) sits
    above the components, so the alert step speaks the REST API itself.

    Args:
        host: The API's base URL (in a cluster: the ``ml-pipeline`` service).
        token: Bearer token; empty: none (single-user Kubeflow).
        timeout: Seconds per call.
        namespace: Profile namespace of experiments and runs; sent only when the server
            says it is multi-user (a single-user server keeps everything in one namespace).
    """

    def __init__(self, host: str, token: str = "", timeout: float = 10.0, namespace: str = "") -> None:
        self.host = host.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.namespace = namespace
        self._multi_user: bool | None = None

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
            hint = (
                " (no or wrong token: mount the projected service-account token of audience "
                f"{TOKEN_AUDIENCE}, kustomize/components/kfp-api-token)"
                if exc.code in (401, 403)
                else ""
            )
            raise PlanetsError(f"KFP API {method} {path} answered HTTP {exc.code}{hint}") from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise PlanetsError(f"KFP API {method} {path} failed: {getattr(exc, 'reason', exc)}") from exc

    def scoped(self) -> dict[str, str]:
        """``{"namespace": ...}`` for a multi-user server with a namespace, else nothing."""
        if self._multi_user is None:
            self._multi_user = bool(self.call("GET", "/healthz").get("multi_user"))
        if not self._multi_user:
            return {}
        if not self.namespace:
            raise InvalidParameterError(
                NAMESPACE_ENV, "", "the profile namespace on multi-user Kubeflow",
                "The monitoring pipeline sets it from the pod's namespace; set it when running elsewhere.",
            )  # fmt: skip
        return {"namespace": self.namespace}

    def _pages(self, path: str, key: str, query: Mapping[str, str]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        token = ""
        for _ in range(MAX_PAGES):
            answer = self.call(
                "GET", path, {**query, "page_size": "100", **({"page_token": token} if token else {})}
            )
            items += answer.get(key) or []
            token = answer.get("next_page_token") or ""
            if not token:
                break
        return items

    def _named(
        self, path: str, key: str, name: str, query: Mapping[str, str] | None = None
    ) -> list[dict[str, Any]]:
        predicate = {"key": "display_name", "operation": "EQUALS", "string_value": name}
        items = self._pages(path, key, {**(query or {}), "filter": json.dumps({"predicates": [predicate]})})
        return [item for item in items if item.get("display_name") == name]

    def pipeline_version(self, pipeline: str, version: str) -> tuple[str, str, str]:
        """``(pipeline id, version id, version name)``: ``version``, or the newest one.

        The newest is the last created of every version (all pages, newest first), not a
        ``-caching-off`` variant (those are copies of another version, made for one run).

        Raises:
            planets_mlops.errors.NotFoundError: no such pipeline or version.
        """
        # Shared pipelines (`planets-mlops upload`) first, then the profile's own.
        pipelines = self._named("/pipelines", "pipelines", pipeline)
        if not pipelines and self.scoped():
            pipelines = self._named("/pipelines", "pipelines", pipeline, self.scoped())
        if not pipelines:
            raise NotFoundError(f"pipeline {pipeline!r} is not uploaded; run `planets-mlops upload` first.")
        pipeline_id = pipelines[0]["pipeline_id"]
        versions = self._pages(
            f"/pipelines/{pipeline_id}/versions", "pipeline_versions", {"sort_by": "created_at desc"}
        )
        if version:
            versions = [v for v in versions if v.get("display_name") == version]
        else:
            versions = [
                v for v in versions if not str(v.get("display_name", "")).endswith(CACHING_OFF_SUFFIX)
            ]
        versions = sorted(versions, key=lambda v: str(v.get("created_at", "")), reverse=True)
        if not versions:
            raise NotFoundError(f"pipeline {pipeline!r} has no version {version or '(none uploaded)'!r}.")
        return pipeline_id, str(versions[0]["pipeline_version_id"]), str(versions[0].get("display_name", ""))

    def experiment_id(self, experiment: str) -> str:
        """Get-or-create the experiment (in the namespace on multi-user Kubeflow)."""
        scope = self.scoped()
        found = self._named("/experiments", "experiments", experiment, scope)
        made = (
            found[0]
            if found
            else self.call("POST", "/experiments", body={"display_name": experiment, **scope})
        )
        return str(made["experiment_id"])

    def runs_named_like(self, experiment_id: str, part: str) -> list[dict[str, Any]]:
        """The experiment's runs whose name contains ``part``, newest first."""
        predicate = {"key": "display_name", "operation": "IS_SUBSTRING", "string_value": part}
        query = {
            **self.scoped(),
            "experiment_id": experiment_id,
            "sort_by": "created_at desc",
            "filter": json.dumps({"predicates": [predicate]}),
        }
        runs = [r for r in self._pages("/runs", "runs", query) if part in str(r.get("display_name", ""))]
        return sorted(runs, key=lambda r: str(r.get("created_at", "")), reverse=True)

    def start_run(
        self,
        pipeline: str,
        version: str,
        experiment: str,
        params: Mapping[str, Any],
        name: str,
        target: RunTarget | None = None,
    ) -> str:
        """Submit a run of an uploaded pipeline version; returns the run's id.

        Args:
            pipeline: The pipeline's name (as ``planets-mlops upload`` names it).
            version: Its version name; empty: the newest version.
            experiment: Experiment of the run (made if missing).
            params: The run's arguments.
            name: The run's name.
            target: Service account and pipeline root of the run (empty: the server's).

        Raises:
            planets_mlops.errors.NotFoundError: no such pipeline or version.
        """
        target = target or RunTarget(namespace=self.namespace)
        pipeline_id, version_id, _ = self.pipeline_version(pipeline, version)
        runtime: dict[str, Any] = {"parameters": dict(params)}
        if target.pipeline_root:
            runtime["pipeline_root"] = target.pipeline_root
        body: dict[str, Any] = {
            "display_name": name,
            "experiment_id": self.experiment_id(experiment),
            "pipeline_version_reference": {"pipeline_id": pipeline_id, "pipeline_version_id": version_id},
            "runtime_config": runtime,
        }
        if target.service_account:
            body["service_account"] = target.service_account
        return str(self.call("POST", "/runs", body=body)["run_id"])


# ----------------------------------------------------------------- de-duplication


@dataclass(frozen=True)
class RetrainingKey:
    """What a retraining learns from and must beat; runs with the same key are duplicates.

    Attributes:
        data: The data's DVC hash (``md5`` of the tracked folder), or ``repo@rev:path`` when
            it could not be read (then ``data_error`` says why).
        production: The production model the window was judged on.
        parameters: sha256 of the run's arguments (canonical JSON).
        data_error: Why the DVC hash is missing (empty when it was read).
    """

    data: str
    production: str
    parameters: str
    data_error: str = ""

    @property
    def value(self) -> str:
        """16 hex digits naming the key (in the run's name)."""
        text = json.dumps([self.data, self.production, self.parameters])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, str]:
        """The key and its parts, for the alert record."""
        return {"key": self.value, **asdict(self)}


def parameters_digest(arguments: Mapping[str, Any]) -> str:
    """sha256 (16 hex digits) of ``arguments`` as canonical JSON."""
    return hashlib.sha256(json.dumps(dict(arguments), sort_keys=True, default=str).encode()).hexdigest()[:16]


def retraining_key(
    data: str, production: str, arguments: Mapping[str, Any], data_error: str = ""
) -> RetrainingKey:
    """The key of a retraining of ``data`` against ``production`` with ``arguments``."""
    return RetrainingKey(data, production, parameters_digest(arguments), data_error)


def retraining_key_for(arguments: Mapping[str, Any], production: str) -> RetrainingKey:
    """The key of a retraining with ``arguments`` against ``production``, its data read from the repository.

    The data is the DVC hash of ``data_path`` of ``data_repo_url`` at ``data_rev`` (the
    arguments, else the data knobs' defaults); a repository that cannot be read keys on
    ``repo@rev:path`` instead, and ``data_error`` says why.
    """
    from planets_mlops.data_source import data_version
    from planets_mlops.errors import DataSourceError
    from planets_mlops.knobs import DataParams

    repo = str(arguments.get("data_repo_url", ""))
    rev = str(arguments.get("data_rev", DataParams.rev))
    path = str(arguments.get("data_path", DataParams.path))
    try:
        data_id, why = data_version(repo, rev, path)[1], ""
    except (DataSourceError, PlanetsError, OSError) as exc:
        data_id, why = f"{repo}@{rev}:{path}", f"{type(exc).__name__}: {exc}"
    return retraining_key(data_id, production, arguments, why)


def run_name(key: RetrainingKey, now: datetime) -> str:
    """``retraining-<key>-<UTC stamp>``: the key is what later triggers look for."""
    return f"{RUN_PREFIX}-{key.value}-{now.astimezone(UTC):%Y%m%d-%H%M%S}"


@dataclass(frozen=True)
class TriggerDecision:
    """Whether to start a retraining, and why."""

    start: bool
    why: str
    previous_run: str = ""


def _created(run: Mapping[str, Any]) -> datetime | None:
    raw = str(run.get("created_at") or "")
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def decide(
    runs: Sequence[Mapping[str, Any]], key: RetrainingKey, cooldown_hours: float, now: datetime
) -> TriggerDecision:
    """Skip when a run with ``key`` is still running or started within ``cooldown_hours`` of ``now``.

    Args:
        runs: The retraining runs whose name holds the key (:meth:`KfpApi.runs_named_like`).
        key: The key of the run that would start.
        cooldown_hours: How long a started run (whatever its outcome) blocks the same key.
        now: The alert's time.
    """
    for run in runs:
        state = str(run.get("state") or "RUNTIME_STATE_UNSPECIFIED")
        ident = str(run.get("run_id", "?"))
        if state in ACTIVE_STATES:
            return TriggerDecision(
                False, f"retraining run {ident} with key {key.value} is still {state}", ident
            )
        created = _created(run)
        if created is not None and now - created < timedelta(hours=cooldown_hours):
            return TriggerDecision(
                False,
                f"retraining run {ident} with key {key.value} started {created.isoformat()} "
                f"({state}), within the {cooldown_hours:g} h cool-down",
                ident,
            )
    return TriggerDecision(True, f"no retraining run with key {key.value} is running or started in the last "
                                 f"{cooldown_hours:g} h")  # fmt: skip
