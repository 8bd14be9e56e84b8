"""The ``retraining`` pipeline: pull data -> import Label Studio labels -> (enough new
labels?) prepare -> train -> evaluate against production -> (promoted?) package, and push the
new model's predictions to the project's unlabelled tasks."""

from kfp import dsl
from planets_mlops.components.import_labels import check_new_labels, import_labels
from planets_mlops.components.push_predictions import push_predictions
from planets_mlops.pipelines.platform import DEFAULT_GPU, GpuOptions, with_secret_env, with_side_effects
from planets_mlops.pipelines.steps import (
    add_deploy,
    add_package,
    add_pull,
    add_train_and_evaluate,
    model_parameters,
)

LABEL_STUDIO_SECRET = "label-studio"
LABEL_STUDIO_ENV = {"LABEL_STUDIO_URL": "LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY": "LABEL_STUDIO_API_KEY"}


def with_label_studio_secret(
    task: dsl.PipelineTask, secret_name: str = LABEL_STUDIO_SECRET
) -> dsl.PipelineTask:
    """``LABEL_STUDIO_URL`` / ``LABEL_STUDIO_API_KEY`` from the Kubernetes Secret ``secret_name``."""
    return with_secret_env(task, secret_name, LABEL_STUDIO_ENV)


def build_retraining(gpu: GpuOptions = DEFAULT_GPU):
    """The ``retraining`` pipeline with the training task placed by ``gpu``."""

    @dsl.pipeline(
        name="retraining",
        description="Merge new Label Studio labels into the DVC data set, retrain, evaluate against "
        "production and package the model when it is at least as good.",
    )
    def retraining(
        data_repo_url: str,
        label_studio_project: str,
        data_rev: str = "main",
        data_path: str = "data/raw",
        dvc_remote: str = "",
        dvc_remote_config: dict = {},
        min_new_labels: int = 1,
        publish_labels: bool = False,
        publish_branch: str = "labels",
        prepare_seed: int = 5241,
        prepare_split: float = 0.2,
        prepare_image_size: int = 32,
        prepare_grayscale: bool = True,
        train_lr: float = 0.001,
        train_epochs: int = 10,
        train_conv_size: int = 64,
        train_dense_size: int = 128,
        train_batch_size: int = 32,
        train_seed: int = 5241,
        train_output_classes: int = 10,
        production_model_uri: str = "",
        min_improvement: float = 0.0,
        push_new_predictions: bool = True,
        deploy: bool = False,
        serving_name: str = "planets-classifier",
        serving_namespace: str = "planets-serving",
    ):
        pull = add_pull(data_repo_url, data_rev, data_path, dvc_remote, dvc_remote_config)

        imported = import_labels(
            dataset=pull.outputs["dataset"],
            project=label_studio_project,
            publish=publish_labels,
            data_repo_url=data_repo_url,
            data_path=data_path,
            publish_branch=publish_branch,
            dvc_remote_config=dvc_remote_config,
        ).set_display_name("Import labels (Label Studio)")
        # Reads a project that changes while the inputs stay the same, and may push a commit.
        with_side_effects(with_label_studio_secret(imported))

        gate = check_new_labels(
            merged=imported.outputs["merged"],
            min_new_labels=min_new_labels,
        ).set_display_name("Enough new labels?")
        with_side_effects(gate)

        with dsl.If(gate.output == True, name="enough-new-labels"):  # noqa: E712 - KFP condition
            train, evaluate = add_train_and_evaluate(
                imported.outputs["merged"],
                gpu,
                base=pull.outputs["dataset"],
                **model_parameters(locals()),
            )
            with dsl.If(evaluate.outputs["Output"] == True, name="promoted"):  # noqa: E712
                package = add_package(train, evaluate)
                with dsl.If(deploy == True, name="deploy"):  # noqa: E712
                    add_deploy(package, serving_name, serving_namespace)
                with dsl.If(push_new_predictions == True, name="push-predictions"):  # noqa: E712
                    push = push_predictions(
                        model=train.outputs["model"],
                        project=label_studio_project,
                    ).set_display_name("Push predictions (Label Studio)")
                    with_side_effects(with_label_studio_secret(push))

    return retraining


retraining = build_retraining()
