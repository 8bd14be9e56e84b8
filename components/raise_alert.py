"""KFP component: the drift alert record, and the actions its parameters ask for.

Reads the webhook URL from ``MONITORING_WEBHOOK_URL`` (the Secret ``monitoring-webhook``),
Label Studio's from ``LABEL_STUDIO_URL`` / ``LABEL_STUDIO_API_KEY`` (the Secret
``label-studio``), the KFP API from ``KFP_HOST`` (default: the in-cluster service), its
token from ``KF_PIPELINES_SA_TOKEN_PATH`` (the projected token of the PodDefault
``kustomize/components/kfp-api-token``, multi-user Kubeflow), and its own namespace and
service account from ``KFP_NAMESPACE`` / ``KFP_RUN_SERVICE_ACCOUNT`` (the downward API).
Never cached and never retried: a retry would notify, create tasks and start runs again.
A failed action fails the step, after the record is written and logged.
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Input, Markdown, Output

from planets_mlops.components.images import RUNTIME_IMAGE
from planets_mlops.knobs import AlertParams, LabelParams, describe_knobs


@dsl.component(base_image=RUNTIME_IMAGE, install_kfp_package=False)
@describe_knobs(AlertParams, LabelParams)
def raise_alert(
    summary: Input[Artifact],
    alert: Output[Markdown],
    decision: Output[Artifact],
    label_studio_project: str = "",
    inbox_uri: str = "",
    inbox_max_tasks: int = 0,
    retraining_pipeline: str = "planets-retraining",
    retraining_version: str = "",
    retraining_arguments: dict = {},
    retraining_experiment: str = "",
    retraining_service_account: str = "",
    retraining_pipeline_root: str = "",
    retraining_cooldown_hours: float = 24.0,
    notify: bool = False,
    push_to_label_studio: bool = False,
    start_retraining: bool = False,
    webhook_timeout_s: float = 10.0,
) -> NamedTuple("Outputs", [("outcome", str)]):  # type: ignore[valid-type]
    """Write the alert for the drift ``summary`` of ``detect_drift`` and act on it; returns the decision.

    ``notify`` posts the alert to the webhook; ``push_to_label_studio`` turns the inbox at
    ``inbox_uri`` into tasks of ``label_studio_project`` (at most ``inbox_max_tasks``, 0: all;
    records hold no images, the inbox does); ``start_retraining`` submits a run of the
    uploaded ``retraining`` pipeline (``retraining_version``, empty: the newest) with
    ``retraining_arguments`` in ``retraining_experiment`` (empty: ``monitoring``), as
    ``retraining_service_account`` with ``retraining_pipeline_root`` (empty: this run's
    service account; the namespace's pipeline root), unless a retraining for the same
    data (DVC hash), production model and arguments is running or started within
    ``retraining_cooldown_hours``. ``alert`` holds the evidence, the window, the model
    version, each action with why it was taken and the retraining key; ``decision`` the
    same as JSON.

    Args:
        summary: detect_drift's summary (verdict, window, evidence).
        label_studio_project: Label Studio project title or id the inbox tasks go to.
        inbox_uri: The service's production inbox (a folder or gs://BUCKET/PREFIX).
        retraining_version: Version of the uploaded retraining pipeline to run; empty: the newest.
        retraining_arguments: Arguments of the retraining run (data_repo_url, ...).
        retraining_experiment: KFP experiment of the retraining run; empty: monitoring.
        retraining_service_account: Service account of the retraining run; empty: this run's.
        retraining_pipeline_root: Pipeline root of the retraining run; empty: the namespace's.

    Returns:
        alert: The evidence, the window, the model version and each action with why, as Markdown.
        decision: The same as JSON.
        outcome: The decision: the actions taken, or why none was.
    """
    from pathlib import Path

    from planets_mlops.knobs import AlertParams
    from planets_mlops.monitoring.alert import RetrainingRun, alert_on_summary

    result = alert_on_summary(
        Path(summary.path),
        AlertParams(
            notify=notify,
            push_to_label_studio=push_to_label_studio,
            start_retraining=start_retraining,
            webhook_timeout_s=webhook_timeout_s,
            retraining_cooldown_hours=retraining_cooldown_hours,
        ),
        RetrainingRun(
            pipeline=retraining_pipeline,
            version=retraining_version,
            arguments=dict(retraining_arguments),
            experiment=retraining_experiment,
            service_account=retraining_service_account,
            pipeline_root=retraining_pipeline_root,
        ),
        label_studio_project=label_studio_project,
        inbox_uri=inbox_uri,
        inbox_max_tasks=inbox_max_tasks,
    )
    Path(alert.path).write_text(result.to_markdown())
    Path(decision.path).write_text(result.to_json())
    alert.metadata.update(result.metadata())
    decision.metadata.update(result.metadata())

    class Outputs(NamedTuple):
        outcome: str

    return Outputs(result.outcome())
