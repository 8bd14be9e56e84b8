"""KFP component: the drift alert record, and the actions its parameters ask for.

Reads the webhook URL from ``MONITORING_WEBHOOK_URL`` (the Secret ``monitoring-webhook``),
Label Studio's from ``LABEL_STUDIO_URL`` / ``LABEL_STUDIO_API_KEY`` (the Secret
``label-studio``) and the KFP API from ``KFP_HOST`` (default: the in-cluster service).
Never cached and never retried: a retry would notify, create tasks and start runs again.
"""

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
    notify: bool = False,
    push_to_label_studio: bool = False,
    start_retraining: bool = False,
    webhook_timeout_s: float = 10.0,
) -> str:
    """Write the alert for the drift ``summary`` of ``detect_drift`` and act on it; returns the decision.

    ``notify`` posts the alert to the webhook; ``push_to_label_studio`` turns the inbox at
    ``inbox_uri`` into tasks of ``label_studio_project`` (at most ``inbox_max_tasks``, 0: all;
    records hold no images, the inbox does); ``start_retraining`` submits a run of the
    uploaded ``retraining`` pipeline (``retraining_version``, empty: the newest) with
    ``retraining_arguments`` in ``retraining_experiment`` (empty: ``monitoring``). ``alert``
    holds the evidence, the window, the model version and each action with why it was
    taken; ``decision`` the same as JSON.

    Args:
        summary: detect_drift's summary (verdict, window, evidence).
        label_studio_project: Label Studio project title or id the inbox tasks go to.
        inbox_uri: The service's production inbox (a folder or gs://BUCKET/PREFIX).
        retraining_version: Version of the uploaded retraining pipeline to run; empty: the newest.
        retraining_arguments: Arguments of the retraining run (data_repo_url, ...).
        retraining_experiment: KFP experiment of the retraining run; empty: monitoring.

    Returns:
        alert: The evidence, the window, the model version and each action with why, as Markdown.
        decision: The same as JSON.
        Output: The decision: the actions taken, or why none was.
    """
    import datetime
    import os
    from pathlib import Path

    from planets_mlops.knobs import AlertParams
    from planets_mlops.monitoring import alert as alerts

    data = alerts.load_summary(Path(summary.path))
    params = AlertParams(notify, push_to_label_studio, start_retraining, webhook_timeout_s)
    url = os.environ.get(alerts.WEBHOOK_ENV, "")

    def post() -> str:
        return alerts.post_webhook(url, {"text": alerts.AlertResult(data).decision(), "summary": data},
                                   params.webhook_timeout_s)  # fmt: skip

    def push() -> str:
        from planets_mlops.inbox import Inbox, open_store
        from planets_mlops.labelstudio.client import LabelStudioClient
        from planets_mlops.labelstudio.inbox_tasks import inbox_to_tasks

        made = inbox_to_tasks(LabelStudioClient(), label_studio_project, Inbox(open_store(inbox_uri)), None,
                              inbox_max_tasks)  # fmt: skip
        return f"{made.created} task(s) in project {made.project_id}, skipped {dict(made.skipped) or 0}"

    def retrain() -> str:
        api = alerts.KfpApi(os.environ.get("KFP_HOST") or alerts.IN_CLUSTER_KFP, alerts.kfp_token(os.environ))
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
        experiment = retraining_experiment or "monitoring"
        name = f"retraining-on-drift-{stamp}"
        run_id = api.start_run(
            retraining_pipeline, retraining_version, experiment, retraining_arguments, name
        )
        return f"run {run_id}"

    result = alerts.raise_alert(
        data,
        params,
        notify=post if url else None,
        push=push if label_studio_project and inbox_uri else None,
        retrain=retrain,
    )
    Path(alert.path).write_text(result.to_markdown())
    Path(decision.path).write_text(result.to_json())
    alert.metadata.update(result.metadata())
    decision.metadata.update(result.metadata())
    return result.decision()
