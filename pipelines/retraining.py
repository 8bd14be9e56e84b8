"""The ``retraining`` pipeline.

Pull data -> import Label Studio labels -> (enough new labels?) prepare -> train ->
evaluate against production (the ``production`` alias with ``tracking``) -> register ->
(promoted?) package -> move the alias -> deploy, and push the
new model's predictions to the project's unlabelled tasks. With ``inbox_uri``, the
production inbox (inputs the service rejected or was unsure of) becomes new tasks.
"""

from typing import Any

from kfp import dsl

from planets_mlops.components.create_inbox_tasks import create_inbox_tasks
from planets_mlops.components.import_labels import check_new_labels, import_labels
from planets_mlops.components.push_predictions import push_predictions
from planets_mlops.knobs import (
    PIPELINE_KNOBS,
    DataParams,
    DeployParams,
    EvaluateParams,
    LabelParams,
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
    step,
    with_secret_env,
    with_side_effects,
)
from planets_mlops.pipelines.steps import (
    add_pull,
    add_release,
    add_train_and_evaluate,
)

PIPELINE = "retraining"
LABEL_STUDIO_SECRET = "label-studio"
LABEL_STUDIO_ENV = {"LABEL_STUDIO_URL": "LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY": "LABEL_STUDIO_API_KEY"}


def with_label_studio_secret(
    task: dsl.PipelineTask, secret_name: str = LABEL_STUDIO_SECRET
) -> dsl.PipelineTask:
    """``LABEL_STUDIO_URL`` / ``LABEL_STUDIO_API_KEY`` from the Kubernetes Secret ``secret_name``."""
    return with_secret_env(task, secret_name, LABEL_STUDIO_ENV)


def build_retraining(
    gpu: GpuOptions = DEFAULT_GPU, cluster: ClusterOptions = GKE, multiworker: MultiWorkerParams | None = None
):
    """The ``retraining`` pipeline with the training task placed by ``gpu``, for ``cluster``.

    ``multiworker``: with ``nodes`` above 1, training runs as a Kubeflow Trainer TrainJob of
    that many workers (``train_multiworker``); None or 1: ``train_model`` on one node.
    """
    index_frozen_modules()

    @dsl.pipeline(
        name="retraining",
        description="Merge new Label Studio labels into the DVC data set, retrain, evaluate against "
        "production and package the model when it is at least as good.",
    )
    @describe_knobs(PIPELINE_KNOBS)
    def retraining(
        data_repo_url: str,
        label_studio_project: str,
        data_rev: str = DataParams.rev,
        data_path: str = DataParams.path,
        dvc_remote: str = DataParams.remote,
        dvc_remote_config: dict = {},
        min_new_labels: int = LabelParams.min_new_labels,
        publish_labels: bool = LabelParams.publish,
        publish_branch: str = LabelParams.publish_branch,
        allow_new_classes: bool = LabelParams.allow_new_classes,
        inbox_uri: str = "",
        inbox_max_tasks: int = LabelParams.inbox_max_tasks,
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
        push_new_predictions: bool = LabelParams.push_new_predictions,
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
    ):
        """Import new Label Studio labels, retrain, and release the model when the gate promotes it.

        Args:
            data_repo_url: Git URL of the data repository (git + DVC) to pull the data set from.
            dvc_remote_config: DVC remote settings added to the remote, e.g. {"endpointurl": ...}
                (no secrets: it is stored in the run).
            label_studio_project: Label Studio project (exact title or id) whose labels are imported.
            inbox_uri: The service's production inbox (a folder or gs://BUCKET/PREFIX) that becomes
                tasks of label_studio_project; empty: none.
            production_model_uri: Model folder of the production model to compare with (a path or
                gs://); empty: the production alias with tracking, else no comparison.
        """
        pull = add_pull(data_repo_url, data_rev, data_path, dvc_remote, dvc_remote_config, cluster)

        imported = import_labels(
            dataset=pull.outputs["dataset"],
            project=label_studio_project,
            publish=publish_labels,
            data_repo_url=data_repo_url,
            data_path=data_path,
            publish_branch=publish_branch,
            dvc_remote_config=dvc_remote_config,
            allow_new_classes=allow_new_classes,
        ).set_display_name("Import labels (Label Studio)")
        # Reads a project that changes while the inputs stay the same, and may push a commit.
        with_side_effects(with_label_studio_secret(step(imported, "import-labels", cluster, idempotent=True)))

        gate = check_new_labels(
            merged=imported.outputs["merged"],
            min_new_labels=min_new_labels,
        ).set_display_name("Enough new labels?")
        # Reads the merged data set only, but its answer gates training on new labels.
        with_side_effects(step(gate, "check-new-labels", cluster, idempotent=True))

        with dsl.If(gate.outputs["enough_new_labels"] == True, name="enough-new-labels"):  # noqa: E712 - KFP condition
            train, evaluate, register = add_train_and_evaluate(
                imported.outputs["merged"],
                gpu,
                base=pull.outputs["dataset"],
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
            with dsl.If(evaluate.outputs["promote"] == True, name="promoted"):  # noqa: E712
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
                with dsl.If(push_new_predictions == True, name="push-predictions"):  # noqa: E712
                    push = push_predictions(
                        model=train.outputs["model"],
                        project=label_studio_project,
                    ).set_display_name("Push predictions (Label Studio)")
                    # Replaces this model version's predictions: safe to retry.
                    step(push, "push-predictions", cluster, idempotent=True)
                    with_side_effects(with_label_studio_secret(push))

        # Production inputs the service kept (rejected or unsure) become tasks, hardest first.
        with dsl.If(inbox_uri != "", name="inbox"):
            inbox = create_inbox_tasks(
                dataset=pull.outputs["dataset"],
                project=label_studio_project,
                inbox_uri=inbox_uri,
                inbox_max_tasks=inbox_max_tasks,
            ).set_display_name("Inbox to Label Studio tasks")
            # The inbox and the project change while the inputs stay the same; a retry adds
            # no task twice (tasks are matched by the image's hash).
            with_side_effects(
                with_label_studio_secret(step(inbox, "create-inbox-tasks", cluster, idempotent=True))
            )

    return retraining


def __getattr__(attribute: str) -> Any:
    """``retraining``: the pipeline built for kfp.local (no retries), on first use.

    Clusters compile through planets_mlops.pipelines.compile. Built lazily: KFP sizes each
    task through ``inspect.stack()``, which costs seconds when it runs inside an import.
    """
    if attribute == "retraining":
        globals()[attribute] = build_retraining(cluster=LOCAL)
        return globals()[attribute]
    raise AttributeError(f"module {__name__!r} has no attribute {attribute!r}")
