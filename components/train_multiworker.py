"""KFP component, opt-in: train on several nodes through a Kubeflow Trainer TrainJob.

The training and retraining pipelines use it in place of ``train_model`` when compiled with
``--train-nodes N`` (``knobs.MultiWorkerParams``; ``pipelines.steps.add_train``), with the
``planets-shared`` claim mounted at ``/mnt/shared`` on its task. It needs a cluster with
Kubeflow Trainer v2.3, the suite's runtime (kustomize/trainer-multiworker) and a
ReadWriteMany volume; no cluster ran it here (see docs/scaling.md).
"""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from planets_mlops.components.images import TRAINING_GPU_IMAGE
from planets_mlops.knobs import MultiWorkerParams, TrainParams, describe_knobs


@dsl.component(base_image=TRAINING_GPU_IMAGE, install_kfp_package=False)
@describe_knobs(TrainParams, MultiWorkerParams)
def train_multiworker(
    prepared: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    workers: int = 2,
    gpus_per_worker: int = 1,
    cpu_per_worker: str = "4",
    memory_per_worker: str = "16Gi",
    queue: str = "",
    deadline_seconds: int = 3600,
    namespace: str = "kubeflow",
    lr: float = 0.001,
    epochs: int = 10,
    conv_size: int = 64,
    dense_size: int = 128,
    batch_size: int = 32,
    seed: int = 5241,
    output_classes: int = 0,
    guard_coverage: float = 0.99,
    augment: str = "photometric",
    lr_schedule: str = "cosine",
):
    """Copy the shards to the shared volume, run a TrainJob of N workers, return the chief's model.

    Args:
        prepared: The prepared data set (prepare_dataset).
        workers: Nodes of the TrainJob, each one replica per GPU under MultiWorkerMirroredStrategy.
        gpus_per_worker: GPUs per node (0: CPU).
        cpu_per_worker: CPU request = limit of each worker (a Kubernetes quantity).
        memory_per_worker: Memory request = limit of each worker (a Kubernetes quantity).

    Returns:
        model: The chief worker's model folder (as train_model writes it).
        metrics: The number of workers the TrainJob trained on.
    """
    import uuid

    from kubernetes import client, config  # type: ignore[import-untyped]

    from planets_mlops.components.images import TRAINING_GPU_IMAGE as image
    from planets_mlops.multiworker import TrainJobOptions, run_trainjob
    from planets_mlops.train import TrainParams

    params = TrainParams(
        lr=lr,
        epochs=epochs,
        conv_size=conv_size,
        dense_size=dense_size,
        batch_size=batch_size,
        seed=seed,
        output_classes=output_classes,
        guard_coverage=guard_coverage,
        augment=augment,
        lr_schedule=lr_schedule,
    )
    options = TrainJobOptions(
        workers=workers,
        image=image,
        queue=queue,
        deadline_seconds=deadline_seconds,
        gpus=gpus_per_worker,
        cpu=cpu_per_worker,
        memory=memory_per_worker,
        namespace=namespace,
    )
    config.load_incluster_config()
    name = f"planets-train-{uuid.uuid4().hex[:12]}"
    run_trainjob(
        client.CustomObjectsApi(), client.CoreV1Api(), prepared.path, model.path, params, options, name
    )
    metrics.log_metric("workers", workers)
    model.metadata.update({"trainjob": name, "workers": workers, "gpus_per_worker": gpus_per_worker})
