"""KFP component: the MLflow run of a training run, and its model as a registered version.

Reads ``MLFLOW_TRACKING_URI`` (and MLflow's credential variables) from the environment;
on a cluster from the Kubernetes Secret ``mlflow-tracking``
(``pipelines.platform.with_mlflow_secret``). With ``tracking`` off it does nothing.
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output

from planets_mlops.components.images import RUNTIME_IMAGE
from planets_mlops.knobs import PIPELINE_KNOBS, RegistryParams, describe_knobs


@dsl.component(base_image=RUNTIME_IMAGE, install_kfp_package=False)
@describe_knobs(RegistryParams, PIPELINE_KNOBS)
def register_model(
    source: Input[Dataset],
    prepared: Input[Dataset],
    model: Input[Model],
    metrics: Input[Metrics],
    confusion: Input[ClassificationMetrics],
    report: Input[HTML],
    verdict: Input[Markdown],
    registered: Output[Artifact],
    run_params: dict = {},
    pipeline: str = "training",
    kfp_run_id: str = "",
    task_name: str = "register-model",
    tracking: bool = False,
    registered_model_name: str = "planets-classifier",
    mlflow_experiment: str = "planets",
    allow_untracked: bool = False,
) -> NamedTuple("Outputs", [("version_registered", bool)]):  # type: ignore[valid-type]
    """Log the run to MLflow and register ``model`` as a version with the ``candidate`` alias.

    The task's MLflow run is nested under the KFP run's parent run as the KFP MLflow plugin
    nests them (and is the plugin's own when it is on). It gets ``run_params``, the values
    of ``metrics`` under the same names, the per-epoch history, the confusion matrix, the
    report and verdict, and the model folder; the version gets the lineage as
    ``planets.*`` tags: data commit, DVC hash and content hash, code revision, images,
    Label Studio project and export.

    Args:
        source: The data set that was prepared (pull or label import): repository, commit.
        prepared: The prepared data set: content hash and commits.
        model: The trained model folder.
        metrics: The evaluate step's metrics.
        confusion: The evaluate step's confusion matrix.
        report: The evaluate step's report.
        verdict: The gate's verdict (``metadata['promote']``).
        run_params: The pipeline's parameters, logged on the run.
        pipeline: The pipeline's name.
        kfp_run_id: The KFP run id (``dsl.PIPELINE_JOB_ID_PLACEHOLDER``).
        task_name: The task's name (its nested run's ``kfp.task_name``).

    Returns:
        registered: The registered version, its runs and its lineage.
        version_registered: Whether a version was registered.
    """
    import json
    from pathlib import Path

    from planets_mlops.components.images import ALL_IMAGES, IMAGE_TAG
    from planets_mlops.knobs import RegistryParams
    from planets_mlops.registry.steps import register_trained_model

    result = register_trained_model(
        RegistryParams(
            tracking=tracking,
            model_name=registered_model_name,
            experiment=mlflow_experiment,
            allow_untracked=allow_untracked,
        ),
        kfp_run_id=kfp_run_id,
        task_name=task_name,
        pipeline=pipeline,
        run_params=dict(run_params),
        metrics=dict(metrics.metadata),
        confusion=dict(confusion.metadata),
        model_dir=model.path,
        files={"evaluation/report.html": report.path, "evaluation/verdict.md": verdict.path},
        source=dict(source.metadata),
        prepared=dict(prepared.metadata),
        promote=bool(verdict.metadata.get("promote", False)),
        verdict=dict(verdict.metadata),
        images=ALL_IMAGES,
        code_revision=IMAGE_TAG,
    )
    metadata = result.metadata()
    registered.metadata.update(metadata)
    Path(registered.path).write_text(json.dumps(metadata, indent=2, default=str), encoding="utf-8")

    class Outputs(NamedTuple):
        version_registered: bool

    return Outputs(bool(result.version))
