"""The ``monitoring`` pipeline, meant to recur (``planets-mlops schedule monitoring``).

Resolve production (the registry's ``production`` alias, or the deployed service's
``/metadata``) -> detect drift of the last hours of that model's production records
against its reference profile -> (drift?) raise the alert: the evidence, the window and the
model version, and, as its parameters ask, a webhook notification, the production inbox
pushed to Label Studio and a run of the ``retraining`` pipeline (at most one per data,
production model and arguments within the cool-down), each recorded with why it was taken.
"""

from typing import Any

from kfp import dsl, kubernetes

from planets_mlops.components.detect_drift import detect_drift
from planets_mlops.components.raise_alert import raise_alert
from planets_mlops.components.resolve_production import resolve_production
from planets_mlops.knobs import (
    PIPELINE_KNOBS,
    AlertParams,
    DriftParams,
    LabelParams,
    RegistryParams,
    describe_knobs,
)
from planets_mlops.monitoring.trigger import NAMESPACE_ENV, SERVICE_ACCOUNT_ENV, TOKEN_LABEL
from planets_mlops.pipelines.platform import (
    DEFAULT_GPU,
    GKE,
    LOCAL,
    ClusterOptions,
    GpuOptions,
    index_frozen_modules,
    step,
    with_mlflow_secret,
    with_secret_env,
    with_side_effects,
)
from planets_mlops.pipelines.retraining import LABEL_STUDIO_ENV, LABEL_STUDIO_SECRET

WEBHOOK_SECRET = "monitoring-webhook"
WEBHOOK_ENV = {"url": "MONITORING_WEBHOOK_URL"}


def with_kfp_api_identity(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """What a task needs to start runs as its own run: namespace, service account, API token.

    The namespace and service account come from the downward API; the token is the
    projected service-account token of audience ``pipelines.kubeflow.org`` that the
    PodDefault of ``kustomize/components/kfp-api-token`` mounts into pods with
    :data:`~planets_mlops.monitoring.trigger.TOKEN_LABEL` (kfp-kubernetes has no projected
    volume of its own; single-user KFP needs no token and ignores the label).
    """
    kubernetes.use_field_path_as_env(task, NAMESPACE_ENV, "metadata.namespace")
    kubernetes.use_field_path_as_env(task, SERVICE_ACCOUNT_ENV, "spec.serviceAccountName")
    return kubernetes.add_pod_label(task, *TOKEN_LABEL)


def build_monitoring(gpu: GpuOptions = DEFAULT_GPU, cluster: ClusterOptions = GKE):
    """The ``monitoring`` pipeline for ``cluster`` (``gpu`` is unused: nothing trains here)."""
    index_frozen_modules()

    @dsl.pipeline(
        name="monitoring",
        description="Check a window of production records for drift against the model's reference "
        "(Evidently) and, on drift, write an alert and act on it.",
    )
    @describe_knobs(PIPELINE_KNOBS)
    def monitoring(
        records_uri: str,
        model_uri: str = "",
        model_version: str = "",
        tracking: bool = RegistryParams.tracking,
        registered_model_name: str = RegistryParams.model_name,
        service_url: str = "",
        window_end: str = "",
        window_hours: int = DriftParams.window_hours,
        drift_alpha: float = DriftParams.alpha,
        drift_share: float = DriftParams.drift_share,
        min_records: int = DriftParams.min_records,
        numeric_test: str = DriftParams.numeric_test,
        prediction_test: str = DriftParams.prediction_test,
        max_records: int = DriftParams.max_records,
        notify: bool = AlertParams.notify,
        push_to_label_studio: bool = AlertParams.push_to_label_studio,
        start_retraining: bool = AlertParams.start_retraining,
        label_studio_project: str = "",
        inbox_uri: str = "",
        inbox_max_tasks: int = LabelParams.inbox_max_tasks,
        retraining_pipeline: str = AlertParams.retraining_pipeline,
        retraining_version: str = "",
        retraining_arguments: dict = {},
        retraining_experiment: str = "",
        retraining_service_account: str = "",
        retraining_pipeline_root: str = "",
        retraining_cooldown_hours: float = AlertParams.retraining_cooldown_hours,
        evidently_workspace: str = "",
    ):
        """Drift check of production's records under ``records_uri`` against its reference profile.

        Args:
            records_uri: Root of the service's prediction records (folder or gs://BUCKET/PREFIX).
            model_uri: The model's folder (holds monitoring_reference.json); empty: the one production names.
            model_version: A model tag to judge instead of production (then model_uri too); empty: production.
            tracking: Production is the registry's production alias (MLflow); off: the service's /metadata.
            registered_model_name: The registered model whose production alias is followed.
            service_url: With tracking off, the deployed service (http://NAME.NAMESPACE.svc.cluster.local:3000).
            window_end: End of the window (ISO-8601); empty: when the drift step starts.
            label_studio_project: Label Studio project title or id.
            inbox_uri: The service's inbox (folder or gs://).
            retraining_version: Version of the uploaded retraining pipeline (empty: newest).
            retraining_arguments: Arguments of the retraining run (data_repo_url, ...).
            retraining_experiment: Experiment of the retraining run (empty: monitoring).
            retraining_service_account: Service account of the retraining run (empty: this run's).
            retraining_pipeline_root: Pipeline root of the retraining run (empty: the namespace's).
            evidently_workspace: Evidently workspace (gs://BUCKET/evidently) that the Evidently UI serves.
        """
        production = resolve_production(
            model_version=model_version,
            model_uri=model_uri,
            tracking=tracking,
            registered_model_name=registered_model_name,
            service_url=service_url,
        ).set_display_name("Resolve production")
        # Production moves while the inputs stay the same: never cached; a retry only reads.
        with_side_effects(
            with_mlflow_secret(step(production, "resolve-production", cluster, idempotent=True))
        )

        check = detect_drift(
            records_uri=records_uri,
            model_uri=production.outputs["model_uri"],
            model_version=production.outputs["model_version"],
            version_source=production.outputs["source"],
            window_end=window_end,
            window_hours=window_hours,
            alpha=drift_alpha,
            drift_share=drift_share,
            min_records=min_records,
            numeric_test=numeric_test,
            prediction_test=prediction_test,
            max_records=max_records,
            evidently_workspace=evidently_workspace,
        ).set_display_name("Detect drift (Evidently)")
        # Records keep arriving while the inputs stay the same: never cached; a retry only reads.
        with_side_effects(step(check, "detect-drift", cluster, idempotent=True))

        with dsl.If(check.outputs["drift_verdict"] == "drift", name="drift"):
            alert = raise_alert(
                summary=check.outputs["summary"],
                label_studio_project=label_studio_project,
                inbox_uri=inbox_uri,
                inbox_max_tasks=inbox_max_tasks,
                retraining_pipeline=retraining_pipeline,
                retraining_version=retraining_version,
                retraining_arguments=retraining_arguments,
                retraining_experiment=retraining_experiment,
                retraining_service_account=retraining_service_account,
                retraining_pipeline_root=retraining_pipeline_root,
                retraining_cooldown_hours=retraining_cooldown_hours,
                notify=notify,
                push_to_label_studio=push_to_label_studio,
                start_retraining=start_retraining,
            ).set_display_name("Raise drift alert")
            # A retry would notify, create tasks and start a run again: never retried or cached.
            with_side_effects(step(alert, "raise-alert", cluster, idempotent=False))
            # Optional: each Secret is needed only when its action is switched on.
            with_secret_env(alert, WEBHOOK_SECRET, WEBHOOK_ENV, optional=True)
            with_secret_env(alert, LABEL_STUDIO_SECRET, LABEL_STUDIO_ENV, optional=True)
            with_kfp_api_identity(alert)

    return monitoring


def __getattr__(attribute: str) -> Any:
    """``monitoring``: the pipeline built for kfp.local (no retries), on first use.

    Clusters compile through planets_mlops.pipelines.compile. Built lazily: KFP sizes each
    task through ``inspect.stack()``, which costs seconds when it runs inside an import.
    """
    if attribute == "monitoring":
        globals()[attribute] = build_monitoring(cluster=LOCAL)
        return globals()[attribute]
    raise AttributeError(f"module {__name__!r} has no attribute {attribute!r}")
