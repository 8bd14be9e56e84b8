"""One MLflow run per pipeline run, nested as the KFP MLflow plugin nests them.

KFP 2.17's MLflow plugin (when a cluster turns it on) creates, per KFP run, a parent run,
and per task a nested run tagged ``mlflow.parentRunId``; the driver hands the task only
``MLFLOW_RUN_ID`` (the nested run), ``MLFLOW_EXPERIMENT_ID`` and ``MLFLOW_TRACKING_URI``
(``backend/src/v2/common/plugins/mlflow/handler.go``, ``RetrieveUserContainerEnvVars``),
so the parent is read from the nested run's ``mlflow.parentRunId`` tag. This module nests
the same way and reuses what exists: the plugin's runs when they are there, else a parent
whose tag names this KFP run, else it creates one. So a cluster with the plugin on sees one
tree, and a retried task logs into its own nested run again instead of adding a second one.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from planets_mlops import metric_names

log = logging.getLogger(__name__)

TAG_KFP_RUN_ID = "kfp.pipeline_run_id"
TAG_KFP_TASK = "kfp.task_name"
TAG_PARENT = "mlflow.parentRunId"
TAG_PIPELINE = "kfp.pipeline_name"
TAG_PIPELINE_VERSION = "planets.pipeline_version"
ENV_PLUGIN_RUN = "MLFLOW_RUN_ID"
MAX_PARAM_CHARS = 6000


@dataclass(frozen=True)
class RunRef:
    """Where a task logs: its nested run, the pipeline run's parent, their experiment."""

    run_id: str
    parent_run_id: str
    experiment_id: str

    def metadata(self) -> dict[str, str]:
        """Artifact metadata naming the runs."""
        return {
            "mlflow_run_id": self.run_id,
            "mlflow_parent_run_id": self.parent_run_id,
            "mlflow_experiment_id": self.experiment_id,
        }


def experiment_id(client: Any, name: str) -> str:
    """The id of experiment ``name``, created when missing (a concurrent creation is fine)."""
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            client.restore_experiment(found.experiment_id)
        return str(found.experiment_id)
    try:
        return str(client.create_experiment(name))
    except MlflowException:
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return str(found.experiment_id)


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def parent_run(client: Any, experiment: str, kfp_run_id: str, tags: Mapping[str, str]) -> tuple[str, str]:
    """``(run id, experiment id)`` of the parent run of KFP run ``kfp_run_id``.

    The plugin's parent first (the ``mlflow.parentRunId`` of the task run ``MLFLOW_RUN_ID``
    it made); else the oldest run of the experiment tagged ``kfp.pipeline_run_id =
    kfp_run_id``; else a new one with that tag.
    """
    plugin = _plugin_task_run(client)
    if plugin is not None:
        return plugin.data.tags[TAG_PARENT], str(plugin.info.experiment_id)
    exp = experiment_id(client, experiment)
    found = client.search_runs(
        [exp],
        filter_string=f"tags.`{TAG_KFP_RUN_ID}` = '{_quote(kfp_run_id)}'",
        max_results=1,
        order_by=["attributes.start_time ASC"],
    )
    if found:
        return found[0].info.run_id, exp
    run = client.create_run(
        exp, run_name=f"kfp-{kfp_run_id}"[:250], tags={TAG_KFP_RUN_ID: kfp_run_id, **tags}
    )
    return run.info.run_id, exp


def _plugin_task_run(client: Any) -> Any | None:
    """The plugin's run for this task (``MLFLOW_RUN_ID`` with a parent tag), or None."""
    run_id = os.environ.get(ENV_PLUGIN_RUN, "").strip()
    if not run_id:
        return None
    run = client.get_run(run_id)
    if not run.data.tags.get(TAG_PARENT):
        log.warning("MLFLOW_RUN_ID=%s has no %s tag: not a KFP plugin run, not used", run_id, TAG_PARENT)
        return None
    return run


def task_run(client: Any, experiment: str, kfp_run_id: str, task: str, tags: Mapping[str, str]) -> RunRef:
    """The nested run of ``task`` in KFP run ``kfp_run_id``: the plugin's, an earlier try's, or new.

    Args:
        client: An ``MlflowClient``.
        experiment: Experiment name used when there is no plugin parent.
        kfp_run_id: The KFP run id (``dsl.PIPELINE_JOB_ID_PLACEHOLDER``).
        task: The task name (``kfp.task_name``).
        tags: Tags set on a new parent and on the nested run (pipeline, version, images).
    """
    plugin = _plugin_task_run(client)
    if plugin is not None:
        client.set_tag(plugin.info.run_id, TAG_KFP_RUN_ID, kfp_run_id)
        client.set_tag(plugin.info.run_id, TAG_KFP_TASK, task)
        return RunRef(plugin.info.run_id, plugin.data.tags[TAG_PARENT], str(plugin.info.experiment_id))
    parent, exp = parent_run(client, experiment, kfp_run_id, tags)
    found = client.search_runs(
        [exp],
        filter_string=f"tags.`{TAG_PARENT}` = '{parent}' and tags.`{TAG_KFP_TASK}` = '{_quote(task)}'",
        max_results=1,
    )
    if found:
        run_id = found[0].info.run_id
        client.update_run(run_id, status="RUNNING")
        return RunRef(run_id, parent, exp)
    run = client.create_run(
        exp,
        run_name=task,
        tags={TAG_PARENT: parent, TAG_KFP_TASK: task, TAG_KFP_RUN_ID: kfp_run_id, **tags},
    )
    return RunRef(run.info.run_id, parent, exp)


def _param_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text[:MAX_PARAM_CHARS]


def finite_metrics(values: Mapping[str, Any]) -> dict[str, float]:
    """The numeric, finite entries of ``values`` (MLflow rejects NaN on some stores; bools kept as 0/1)."""
    out = {}
    for key, value in values.items():
        if isinstance(value, bool):
            out[key] = float(value)
        elif isinstance(value, (int, float)) and math.isfinite(value):
            out[key] = float(value)
    return out


def log_training(
    client: Any,
    run: RunRef,
    *,
    params: Mapping[str, Any],
    metrics: Mapping[str, Any],
    history: Mapping[str, list[float]],
    classes: list[str],
    confusion_matrix: list[list[int]],
    files: Mapping[str, Path],
    model_dir: Path | None,
) -> None:
    """Log a trained and evaluated model to ``run``: params, metrics, history, confusion, files.

    Args:
        client: An ``MlflowClient``.
        run: The task's nested run.
        params: Run parameters (logged as strings, nested values as JSON).
        metrics: The KFP Metrics artifact's values, logged under the same names.
        history: Keras' per-epoch series (``loss``, ``val_accuracy``...), logged as
            ``history.train_loss``, ``history.val_accuracy``... with ``step`` = epoch.
        classes: Class names, the confusion matrix's order.
        confusion_matrix: Rows are true classes, columns predicted ones.
        files: Artifact path in the run -> local file (reports, verdict, curves).
        model_dir: The model folder, logged under ``model/`` (what a version points to).
    """
    import time

    from mlflow.entities import Metric, Param

    now = int(time.time() * 1000)
    existing = client.get_run(run.run_id).data.params
    param_list = [
        Param(key, _param_value(value))
        for key, value in sorted(params.items())
        if key not in existing or existing[key] == _param_value(value)
    ]
    metric_list = [Metric(key, value, now, 0) for key, value in finite_metrics(metrics).items()]
    for name, series in metric_names.history_series(history).items():
        for epoch, value in enumerate(series):
            if isinstance(value, (int, float)) and math.isfinite(value):
                metric_list.append(Metric(name, float(value), now, epoch))
    for start in range(0, max(len(param_list), len(metric_list)), 100):
        client.log_batch(
            run.run_id, metrics=metric_list[start : start + 100], params=param_list[start : start + 100]
        )
    client.log_dict(
        run.run_id, {"classes": classes, "matrix": confusion_matrix}, "evaluation/confusion_matrix.json"
    )
    client.log_dict(run.run_id, dict(history), "training/history.json")
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory(prefix="mlflow-files-") as staging:
        # KFP artifact files have no extension: each is logged under the name it is given.
        for artifact_path, local in files.items():
            if Path(local).is_file():
                target = Path(staging, artifact_path)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(local, target)
        if any(Path(staging).iterdir()):
            client.log_artifacts(run.run_id, staging)
    if model_dir is not None:
        client.log_artifacts(run.run_id, str(model_dir), "model")
    log.info(
        "Logged %d params, %d metric points and the model to MLflow run %s",
        len(param_list),
        len(metric_list),
        run.run_id,
    )
