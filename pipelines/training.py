"""The ``training`` pipeline: pull data -> prepare -> train -> evaluate -> (promoted?)
package as a bento -> (asked to?) deploy to Kubernetes."""

from kfp import dsl

from components.deploy_model import deploy_model
from components.evaluate_model import evaluate_model
from components.package_model import package_model
from components.prepare_dataset import prepare_dataset
from components.pull_data import pull_data
from components.train_model import train_model
from pipelines.platform import DEFAULT_GPU, GpuOptions, with_side_effects


def add_deploy(package: dsl.PipelineTask, name, namespace) -> dsl.PipelineTask:
    """Deploy the bento of ``package``; never cached, since it changes the cluster."""
    task = deploy_model(bento=package.outputs["bento"], name=name, namespace=namespace)
    return with_side_effects(task.set_display_name("Deploy to Kubernetes"))


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
        pull = pull_data(
            repo_url=data_repo_url, rev=data_rev, path=data_path,
            remote=dvc_remote, remote_config=dvc_remote_config,
        ).set_display_name("Pull data (DVC)")
        # A branch name resolves to new data over time: never reuse a cached pull.
        with_side_effects(pull)

        prepare = prepare_dataset(
            raw=pull.outputs["dataset"], seed=prepare_seed, split=prepare_split,
            image_size=prepare_image_size, grayscale=prepare_grayscale,
            output_classes=train_output_classes,
        ).set_display_name("Prepare data set")

        train = train_model(
            prepared=prepare.outputs["prepared"], lr=train_lr, epochs=train_epochs,
            conv_size=train_conv_size, dense_size=train_dense_size, batch_size=train_batch_size,
            seed=train_seed, output_classes=train_output_classes,
        ).set_display_name("Train model (GPU)")
        gpu.apply(train)

        evaluate = evaluate_model(
            prepared=prepare.outputs["prepared"], model=train.outputs["model"],
            production_model_uri=production_model_uri, min_improvement=min_improvement,
        ).set_display_name("Evaluate model")
        promoted = evaluate.outputs["Output"]

        with dsl.If(promoted == True, name="promoted"):  # noqa: E712 - a KFP condition
            package = package_model(
                model=train.outputs["model"], metrics=evaluate.outputs["metrics"],
            ).set_display_name("Package model (BentoML)")
            with dsl.If(deploy == True, name="deploy"):  # noqa: E712
                add_deploy(package, serving_name, serving_namespace)
        return promoted

    return training


training = build_training()
