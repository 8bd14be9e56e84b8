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

from kfp import dsl, kubernetes

from planets_mlops.components.deploy_model import deploy_model
from planets_mlops.components.evaluate_model import evaluate_model
from planets_mlops.components.package_model import package_model
from planets_mlops.components.prepare_dataset import prepare_dataset
from planets_mlops.components.promote_model import promote_model
from planets_mlops.components.pull_data import pull_data
from planets_mlops.components.register_model import register_model
from planets_mlops.components.train_model import train_model
from planets_mlops.components.train_multiworker import train_multiworker
from planets_mlops.knobs import MultiWorkerParams
from planets_mlops.multiworker import SHARED_CLAIM, SHARED_DIR
from planets_mlops.pipelines.platform import (
    GKE,
    ClusterOptions,
    GpuOptions,
    step,
    with_mlflow_secret,
    with_side_effects,
)


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


def add_train(
    prepared: Any,
    gpu: GpuOptions,
    multiworker: MultiWorkerParams | None,
    cluster: ClusterOptions = GKE,
    **params: Any,
) -> dsl.PipelineTask:
    """The training task on ``prepared``; its ``model`` output feeds the steps after it.

    One node (``multiworker`` None or ``nodes=1``, the default): ``train_model``, placed by
    ``gpu``. Several (``planets-mlops compile --train-nodes N``): ``train_multiworker``, a
    CPU task that runs a Kubeflow Trainer TrainJob of N workers, each sized by ``gpu``
    (GPUs, CPU, memory), on the ``planets-shared`` volume mounted on it.

    Args:
        prepared: The prepared data set (``prepare_dataset``'s output).
        gpu: Placement of the training (of each worker, with several nodes).
        multiworker: Training on several nodes; None: one node.
        cluster: Retries and bucket credentials.
        params: The training knobs (``TrainParams``' fields), pipeline inputs.
    """
    if multiworker is None or not multiworker.on:
        train = train_model(prepared=prepared, **params).set_display_name(f"Train model ({gpu.label})")
        return cluster.apply(gpu.apply(train), "train-model", idempotent=True)
    cpu, memory = gpu.sizes
    train = train_multiworker(
        prepared=prepared,
        workers=multiworker.nodes,
        gpus_per_worker=gpu.count,
        cpu_per_worker=cpu,
        memory_per_worker=memory,
        queue=multiworker.queue,
        deadline_seconds=multiworker.deadline_seconds,
        namespace=multiworker.namespace,
        **params,
    ).set_display_name(f"Train model ({multiworker.nodes} nodes, {gpu.label})")
    kubernetes.mount_pvc(train, pvc_name=SHARED_CLAIM, mount_path=SHARED_DIR)
    # A retry starts a new TrainJob under a new name (the old one ends at its deadline).
    return step(train, "train-multiworker", cluster, idempotent=True)


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
    train_augment,
    train_lr_schedule,
    production_model_uri,
    min_improvement,
    gate_alpha,
    tracking,
    registered_model_name,
    mlflow_experiment,
    allow_untracked,
    pipeline: str,
    base: Any = None,
    cluster: ClusterOptions = GKE,
    multiworker: MultiWorkerParams | None = None,
) -> tuple[dsl.PipelineTask, dsl.PipelineTask, dsl.PipelineTask]:
    """Prepare -> train (placed by ``gpu``) -> evaluate -> register; returns (train, evaluate, register).

    ``base``: the data set ``raw`` was grown from; its files keep their split. ``register``
    logs the run and registers the model when ``tracking`` is on (it does nothing otherwise);
    evaluate then compares against the ``production`` alias unless a URI is given.
    ``multiworker``: train on several nodes (:func:`add_train`); None: one node.
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
    train = add_train(
        prepare.outputs["prepared"],
        gpu,
        multiworker,
        cluster,
        lr=train_lr,
        epochs=train_epochs,
        conv_size=train_conv_size,
        dense_size=train_dense_size,
        batch_size=train_batch_size,
        seed=train_seed,
        output_classes=train_output_classes,
        guard_coverage=train_guard_coverage,
        augment=train_augment,
        lr_schedule=train_lr_schedule,
    )
    evaluate = evaluate_model(
        prepared=prepare.outputs["prepared"],
        model=train.outputs["model"],
        production_model_uri=production_model_uri,
        min_improvement=min_improvement,
        gate_alpha=gate_alpha,
        tracking=tracking,
        registered_model_name=registered_model_name,
        run_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
    ).set_display_name("Evaluate vs production")
    # Reads the production alias, which moves while the inputs stay the same.
    with_side_effects(with_mlflow_secret(step(evaluate, "evaluate-model", cluster, idempotent=True)))
    run_params = {
        "prepare_seed": prepare_seed,
        "prepare_split": prepare_split,
        "prepare_image_size": prepare_image_size,
        "prepare_grayscale": prepare_grayscale,
        "train_lr": train_lr,
        "train_epochs": train_epochs,
        "train_conv_size": train_conv_size,
        "train_dense_size": train_dense_size,
        "train_batch_size": train_batch_size,
        "train_seed": train_seed,
        "train_output_classes": train_output_classes,
        "train_guard_coverage": train_guard_coverage,
        "train_augment": train_augment,
        "train_lr_schedule": train_lr_schedule,
        "min_improvement": min_improvement,
        "gate_alpha": gate_alpha,
        "production_model_uri": production_model_uri,
    }
    register = register_model(
        source=raw,
        prepared=prepare.outputs["prepared"],
        model=train.outputs["model"],
        metrics=evaluate.outputs["metrics"],
        confusion=evaluate.outputs["confusion"],
        report=evaluate.outputs["report"],
        verdict=evaluate.outputs["verdict"],
        run_params=run_params,
        pipeline=pipeline,
        kfp_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        tracking=tracking,
        registered_model_name=registered_model_name,
        mlflow_experiment=mlflow_experiment,
        allow_untracked=allow_untracked,
    ).set_display_name("Register model (MLflow)")
    # A retry reuses its MLflow run and version (matched by run and task name).
    with_side_effects(with_mlflow_secret(step(register, "register-model", cluster, idempotent=True)))
    return train, evaluate, register


def add_promote(
    register: dsl.PipelineTask,
    evaluate: dsl.PipelineTask,
    package: dsl.PipelineTask,
    *,
    tracking,
    registered_model_name,
    allow_untracked,
    release=True,
    cluster: ClusterOptions = GKE,
) -> dsl.PipelineTask:
    """Move ``production`` to the registered version (compare-and-set) and record the release.

    With ``release`` off it records the bento on the version and moves nothing.

    Retried safely: a retry of the same KFP run finds the move it made and records nothing
    twice; never cached (the alias is outside state).
    """
    promote = promote_model(
        registered=register.outputs["registered"],
        verdict=evaluate.outputs["verdict"],
        bento=package.outputs["bento"],
        kfp_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        tracking=tracking,
        registered_model_name=registered_model_name,
        allow_untracked=allow_untracked,
        move_production=release,
    ).set_display_name("Promote (production alias)")
    return with_side_effects(with_mlflow_secret(step(promote, "promote-model", cluster, idempotent=True)))


def add_package(
    train: dsl.PipelineTask, evaluate: dsl.PipelineTask, cluster: ClusterOptions = GKE
) -> dsl.PipelineTask:
    """Package the trained model of ``train`` with the metrics of ``evaluate``."""
    package = package_model(
        model=train.outputs["model"],
        metrics=evaluate.outputs["metrics"],
    ).set_display_name("Package model (BentoML)")
    return step(package, "package-model", cluster, idempotent=True)


def add_deploy(
    package: dsl.PipelineTask,
    name,
    namespace,
    cluster: ClusterOptions = GKE,
    promote: dsl.PipelineTask | None = None,
    registered_model_name: Any = "",
    monitoring_uri="",
    monitoring_sample=1.0,
    inbox_uri="",
) -> dsl.PipelineTask:
    """Deploy the bento of ``package``; never cached (it changes the cluster), never retried.

    With ``promote``, it deploys the version the ``production`` alias names now (the one
    ``promote`` moved it to, whose bento ``package`` made) and records the revision on it.

    The serving pods read the bento with ``cluster.serving_gcs_key_secret`` (kind), never
    with the pipeline's own key; with ``monitoring_uri`` they record their predictions there,
    with ``inbox_uri`` they keep the inputs they rejected or were unsure of there (the
    production inbox the retraining pipeline's ``inbox_uri`` reads).
    """
    task = deploy_model(
        bento=package.outputs["bento"],
        name=name,
        namespace=namespace,
        gcs_credentials_secret=cluster.serving_gcs_key_secret,
        monitoring_uri=monitoring_uri,
        monitoring_sample=monitoring_sample,
        inbox_uri=inbox_uri,
        **(
            {
                "registered_model_name": registered_model_name,
                "registered_version": promote.outputs["production_version"],
            }
            if promote is not None
            else {}
        ),
    ).set_display_name("Deploy to Kubernetes")
    if promote is not None:
        with_mlflow_secret(task)
    return with_side_effects(step(task, "deploy-model", cluster, idempotent=False))


def add_release(
    train: dsl.PipelineTask,
    evaluate: dsl.PipelineTask,
    register: dsl.PipelineTask,
    *,
    tracking,
    registered_model_name,
    allow_untracked,
    release,
    deploy,
    serving_name,
    serving_namespace,
    serving_monitoring_uri,
    serving_monitoring_sample,
    serving_inbox_uri="",
    cluster: ClusterOptions = GKE,
) -> tuple[dsl.PipelineTask, dsl.PipelineTask]:
    """Inside the ``promoted`` branch: package, move ``production``, deploy what it names now.

    Nothing is deployed when another promotion won the alias, or with ``release`` off (the
    version waits for review; ``promote`` answers "" either way).
    Returns (package, promote).
    """
    package = add_package(train, evaluate, cluster)
    promote = add_promote(
        register,
        evaluate,
        package,
        tracking=tracking,
        registered_model_name=registered_model_name,
        allow_untracked=allow_untracked,
        release=release,
        cluster=cluster,
    )
    with dsl.If(promote.outputs["production_version"] != "", name="production-moved"):
        with dsl.If(deploy == True, name="deploy"):  # noqa: E712 - a KFP condition
            add_deploy(
                package,
                serving_name,
                serving_namespace,
                cluster,
                promote,
                registered_model_name,
                monitoring_uri=serving_monitoring_uri,
                monitoring_sample=serving_monitoring_sample,
                inbox_uri=serving_inbox_uri,
            )
    return package, promote
