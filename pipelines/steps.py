"""Task groups shared by the pipelines: pull, prepare -> train -> evaluate, package/deploy.

Every task gets CPU/memory requests and limits, and every step except ``deploy_model``
retries with backoff on a cluster: each one is safe to run twice (reads, writes of its own
output artifacts, check-then-create data versions, replace-by-model-version predictions).
``deploy_model`` is the exception: it fails only after its rollout or smoke test failed
and it rolled back, so a retry would put the bento it just judged broken in front of
traffic again.
"""

from __future__ import annotations

from typing import Any

from kfp import dsl
from planets_mlops.components.deploy_model import deploy_model
from planets_mlops.components.evaluate_model import evaluate_model
from planets_mlops.components.package_model import package_model
from planets_mlops.components.prepare_dataset import prepare_dataset
from planets_mlops.components.pull_data import pull_data
from planets_mlops.components.train_model import train_model
from planets_mlops.pipelines.platform import GKE, ClusterOptions, GpuOptions, step, with_side_effects


def add_pull(
    data_repo_url, data_rev, data_path, dvc_remote, dvc_remote_config, cluster: ClusterOptions = GKE
) -> dsl.PipelineTask:
    """DVC pull; a branch name resolves to new data over time, so never cached."""
    pull = pull_data(
        repo_url=data_repo_url,
        rev=data_rev,
        path=data_path,
        remote=dvc_remote,
        remote_config=dvc_remote_config,
    ).set_display_name("Pull data (DVC)")
    return with_side_effects(step(pull, "pull-data", cluster, idempotent=True))


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
    train_guard_coverage,
    production_model_uri,
    min_improvement,
    gate_alpha,
    base: Any = None,
    cluster: ClusterOptions = GKE,
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
    step(prepare, "prepare-dataset", cluster, idempotent=True)
    train = train_model(
        prepared=prepare.outputs["prepared"],
        lr=train_lr,
        epochs=train_epochs,
        conv_size=train_conv_size,
        dense_size=train_dense_size,
        batch_size=train_batch_size,
        seed=train_seed,
        output_classes=train_output_classes,
        guard_coverage=train_guard_coverage,
    ).set_display_name(f"Train model ({gpu.label})")
    cluster.apply(gpu.apply(train), idempotent=True)
    evaluate = evaluate_model(
        prepared=prepare.outputs["prepared"],
        model=train.outputs["model"],
        production_model_uri=production_model_uri,
        min_improvement=min_improvement,
        gate_alpha=gate_alpha,
    ).set_display_name("Evaluate vs production")
    step(evaluate, "evaluate-model", cluster, idempotent=True)
    return train, evaluate


def add_package(
    train: dsl.PipelineTask, evaluate: dsl.PipelineTask, cluster: ClusterOptions = GKE
) -> dsl.PipelineTask:
    """Package the trained model of ``train`` with the metrics of ``evaluate``."""
    package = package_model(
        model=train.outputs["model"],
        metrics=evaluate.outputs["metrics"],
    ).set_display_name("Package model (BentoML)")
    return step(package, "package-model", cluster, idempotent=True)


def add_deploy(package: dsl.PipelineTask, name, namespace, cluster: ClusterOptions = GKE) -> dsl.PipelineTask:
    """Deploy the bento of ``package``; never cached (it changes the cluster), never retried.

    The serving pods read the bento with ``cluster.serving_gcs_key_secret`` (kind), never
    with the pipeline's own key.
    """
    task = deploy_model(
        bento=package.outputs["bento"],
        name=name,
        namespace=namespace,
        gcs_credentials_secret=cluster.serving_gcs_key_secret,
    ).set_display_name("Deploy to Kubernetes")
    return with_side_effects(step(task, "deploy-model", cluster, idempotent=False))
