"""The ``training`` pipeline.

Pull data -> prepare -> train -> evaluate -> register (MLflow, with ``tracking``) ->
(promoted?) package as a bento -> move the ``production`` alias -> (asked to?) deploy to
Kubernetes. With ``release`` off the alias stays and nothing is deployed: the packaged candidate
waits for review (a pull request's run; the merge promotes exactly that version).
"""

from typing import Any, NamedTuple

from kfp import dsl

from planets_mlops.knobs import (
    PIPELINE_KNOBS,
    DataParams,
    DeployParams,
    EvaluateParams,
    MultiWorkerParams,
    PrepareParams,
    RegistryParams,
    TrainParams,
    describe_knobs,
)
from planets_mlops.pipelines.platform import (
    DEFAULT_GPU,
    GKE,
    LOCAL,
    ClusterOptions,
    GpuOptions,
    index_frozen_modules,
)
from planets_mlops.pipelines.steps import (
    add_pull,
    add_release,
    add_train_and_evaluate,
)

PIPELINE = "training"


def build_training(
    gpu: GpuOptions = DEFAULT_GPU, cluster: ClusterOptions = GKE, multiworker: MultiWorkerParams | None = None
):
    """The ``training`` pipeline with the training task placed by ``gpu``, for ``cluster``.

    ``multiworker``: with ``nodes`` above 1, training runs as a Kubeflow Trainer TrainJob of
    that many workers (``train_multiworker``); None or 1: ``train_model`` on one node.
    """
    index_frozen_modules()

    @dsl.pipeline(
        name="training",
        description="Pull a DVC data set at a git revision, prepare it, train the planets CNN, evaluate "
        "it against production, package it as a BentoML bento and optionally deploy it.",
    )
    @describe_knobs(PIPELINE_KNOBS)
    def training(
        data_repo_url: str,
        data_rev: str = DataParams.rev,
        data_path: str = DataParams.path,
        dvc_remote: str = DataParams.remote,
        dvc_remote_config: dict = {},
        prepare_seed: int = PrepareParams.seed,
        prepare_split: float = PrepareParams.split,
        prepare_image_size: int = PrepareParams.image_size,
        prepare_grayscale: bool = PrepareParams.grayscale,
        train_lr: float = TrainParams.lr,
        train_epochs: int = TrainParams.epochs,
        train_conv_size: int = TrainParams.conv_size,
        train_dense_size: int = TrainParams.dense_size,
        train_batch_size: int = TrainParams.batch_size,
        train_seed: int = TrainParams.seed,
        train_output_classes: int = TrainParams.output_classes,
        train_guard_coverage: float = TrainParams.guard_coverage,
        train_augment: str = TrainParams.augment,
        train_lr_schedule: str = TrainParams.lr_schedule,
        production_model_uri: str = "",
        min_improvement: float = EvaluateParams.min_improvement,
        gate_alpha: float = EvaluateParams.gate_alpha,
        deploy: bool = DeployParams.deploy,
        serving_name: str = DeployParams.name,
        serving_namespace: str = DeployParams.namespace,
        serving_monitoring_uri: str = DeployParams.monitoring_uri,
        serving_monitoring_sample: float = DeployParams.monitoring_sample,
        serving_inbox_uri: str = DeployParams.inbox_uri,
        tracking: bool = RegistryParams.tracking,
        registered_model_name: str = RegistryParams.model_name,
        mlflow_experiment: str = RegistryParams.experiment,
        allow_untracked: bool = RegistryParams.allow_untracked,
        release: bool = RegistryParams.release,
    ) -> NamedTuple("Outputs", [("promoted", bool)]):  # type: ignore[valid-type]
        """Train, evaluate against production, and release the model when the gate promotes it.

        Args:
            data_repo_url: Git URL of the data repository (git + DVC) to pull the data set from.
            dvc_remote_config: DVC remote settings added to the remote, e.g. {"endpointurl": ...}
                (no secrets: it is stored in the run).
            production_model_uri: Model folder of the production model to compare with (a path or
                gs://); empty: the production alias with tracking, else no comparison.

        Returns:
            promoted: Whether the gate promoted the candidate.
        """
        pull = add_pull(data_repo_url, data_rev, data_path, dvc_remote, dvc_remote_config, cluster)
        train, evaluate, register = add_train_and_evaluate(
            pull.outputs["dataset"],
            gpu,
            prepare_seed=prepare_seed,
            prepare_split=prepare_split,
            prepare_image_size=prepare_image_size,
            prepare_grayscale=prepare_grayscale,
            train_lr=train_lr,
            train_epochs=train_epochs,
            train_conv_size=train_conv_size,
            train_dense_size=train_dense_size,
            train_batch_size=train_batch_size,
            train_seed=train_seed,
            train_output_classes=train_output_classes,
            train_guard_coverage=train_guard_coverage,
            train_augment=train_augment,
            train_lr_schedule=train_lr_schedule,
            production_model_uri=production_model_uri,
            min_improvement=min_improvement,
            gate_alpha=gate_alpha,
            tracking=tracking,
            registered_model_name=registered_model_name,
            mlflow_experiment=mlflow_experiment,
            allow_untracked=allow_untracked,
            pipeline=PIPELINE,
            cluster=cluster,
            multiworker=multiworker,
        )
        promoted = evaluate.outputs["promote"]
        with dsl.If(promoted == True, name="promoted"):  # noqa: E712 - a KFP condition
            add_release(
                train,
                evaluate,
                register,
                tracking=tracking,
                registered_model_name=registered_model_name,
                allow_untracked=allow_untracked,
                release=release,
                deploy=deploy,
                serving_name=serving_name,
                serving_namespace=serving_namespace,
                serving_monitoring_uri=serving_monitoring_uri,
                serving_monitoring_sample=serving_monitoring_sample,
                serving_inbox_uri=serving_inbox_uri,
                cluster=cluster,
            )

        class Outputs(NamedTuple):
            promoted: bool

        return Outputs(promoted)

    return training


def __getattr__(attribute: str) -> Any:
    """``training``: the pipeline built for kfp.local (no retries), on first use.

    Clusters compile through planets_mlops.pipelines.compile. Built lazily: KFP sizes each
    task through ``inspect.stack()``, which costs seconds when it runs inside an import.
    """
    if attribute == "training":
        globals()[attribute] = build_training(cluster=LOCAL)
        return globals()[attribute]
    raise AttributeError(f"module {__name__!r} has no attribute {attribute!r}")
