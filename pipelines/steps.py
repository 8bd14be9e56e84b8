"""Task groups shared by the pipelines: pull, prepare -> train -> evaluate, package/deploy."""

from __future__ import annotations

from typing import Any

from kfp import dsl
from planets_mlops.components.deploy_model import deploy_model
from planets_mlops.components.evaluate_model import evaluate_model
from planets_mlops.components.package_model import package_model
from planets_mlops.components.prepare_dataset import prepare_dataset
from planets_mlops.components.pull_data import pull_data
from planets_mlops.components.train_model import train_model
from planets_mlops.pipelines.platform import GpuOptions, with_side_effects


def add_pull(data_repo_url, data_rev, data_path, dvc_remote, dvc_remote_config) -> dsl.PipelineTask:
    """DVC pull; a branch name resolves to new data over time, so never cached."""
    pull = pull_data(
        repo_url=data_repo_url,
        rev=data_rev,
        path=data_path,
        remote=dvc_remote,
        remote_config=dvc_remote_config,
    ).set_display_name("Pull data (DVC)")
    return with_side_effects(pull)


def add_train_and_evaluate(
    raw: Any,
    gpu: GpuOptions,
    *,
    prepare_seed,
    prepare_split,
    prepare_image_size,
    prepare_grayscale,
    train_lr,
    train_epochs,
    train_conv_size,
    train_dense_size,
    train_batch_size,
    train_seed,
    train_output_classes,
    production_model_uri,
    min_improvement,
    gate_alpha,
    base: Any = None,
) -> tuple[dsl.PipelineTask, dsl.PipelineTask]:
    """Prepare -> train (placed by ``gpu``) -> evaluate; returns (train, evaluate).

    ``base``: the data set ``raw`` was grown from; its files keep their split.
    """
    grown_from = {"base": base} if base is not None else {}
    prepare = prepare_dataset(
        raw=raw,
        seed=prepare_seed,
        split=prepare_split,
        image_size=prepare_image_size,
        grayscale=prepare_grayscale,
        output_classes=train_output_classes,
        **grown_from,
    ).set_display_name("Prepare data set")
    train = train_model(
        prepared=prepare.outputs["prepared"],
        lr=train_lr,
        epochs=train_epochs,
        conv_size=train_conv_size,
        dense_size=train_dense_size,
        batch_size=train_batch_size,
        seed=train_seed,
        output_classes=train_output_classes,
    ).set_display_name("Train model (GPU)")
    gpu.apply(train)
    evaluate = evaluate_model(
        prepared=prepare.outputs["prepared"],
        model=train.outputs["model"],
        production_model_uri=production_model_uri,
        min_improvement=min_improvement,
        gate_alpha=gate_alpha,
    ).set_display_name("Evaluate vs production")
    return train, evaluate


def add_package(train: dsl.PipelineTask, evaluate: dsl.PipelineTask) -> dsl.PipelineTask:
    """Package the trained model of ``train`` with the metrics of ``evaluate``."""
    return package_model(
        model=train.outputs["model"],
        metrics=evaluate.outputs["metrics"],
    ).set_display_name("Package model (BentoML)")


def add_deploy(package: dsl.PipelineTask, name, namespace) -> dsl.PipelineTask:
    """Deploy the bento of ``package``; never cached, since it changes the cluster."""
    task = deploy_model(bento=package.outputs["bento"], name=name, namespace=namespace)
    return with_side_effects(task.set_display_name("Deploy to Kubernetes"))
