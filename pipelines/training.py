"""The ``training`` pipeline: pull data -> prepare -> train -> evaluate -> (promoted?)
package as a bento -> (asked to?) deploy to Kubernetes."""

from kfp import dsl
from planets_mlops.pipelines.platform import DEFAULT_GPU, GpuOptions
from planets_mlops.pipelines.steps import (
    add_deploy,
    add_package,
    add_pull,
    add_train_and_evaluate,
    model_parameters,
)


def build_training(gpu: GpuOptions = DEFAULT_GPU):
    """The ``training`` pipeline with the training task placed by ``gpu``."""

    @dsl.pipeline(
        name="training",
        description="Pull a DVC data set at a git revision, prepare it, train the planets CNN, evaluate "
        "it against production, package it as a BentoML bento and optionally deploy it.",
    )
    def training(
        data_repo_url: str,
        data_rev: str = "main",
        data_path: str = "data/raw",
        dvc_remote: str = "",
        dvc_remote_config: dict = {},
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
        deploy: bool = False,
        serving_name: str = "planets-classifier",
        serving_namespace: str = "planets-serving",
    ) -> bool:
        pull = add_pull(data_repo_url, data_rev, data_path, dvc_remote, dvc_remote_config)
        train, evaluate = add_train_and_evaluate(pull.outputs["dataset"], gpu, **model_parameters(locals()))
        promoted = evaluate.outputs["Output"]
        with dsl.If(promoted == True, name="promoted"):  # noqa: E712 - a KFP condition
            package = add_package(train, evaluate)
            with dsl.If(deploy == True, name="deploy"):  # noqa: E712
                add_deploy(package, serving_name, serving_namespace)
        return promoted

    return training


training = build_training()
