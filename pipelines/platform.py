"""Small named helpers that set platform options on tasks (GPU, resources, retries, secrets).

Compile-time options come in two objects: :class:`GpuOptions` (where training runs) and
:class:`ClusterOptions` (retries, how step code reaches the bucket). ``kfp.local`` ignores
resources and every kfp-kubernetes setting, but it does honour retries (it sleeps through
each backoff), so the pipelines built for local runs use :data:`LOCAL` (no retries).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from kfp import dsl, kubernetes

from planets_mlops.errors import InvalidParameterError

GPU_RESOURCE = "nvidia.com/gpu"
GPU_TAINT_KEY = "nvidia.com/gpu"
GCS_KEY_DIR = "/var/secrets/gcs"
"""Where a GCS key Secret is mounted in step containers (``key.json`` inside)."""


@dataclass(frozen=True)
class GpuOptions:
    """Compile-time GPU placement of the training task (``count=0``: CPU only).

    ``cpu`` and ``memory`` are the training task's requests and limits (equal, so the
    pod is Guaranteed and is not evicted mid-epoch).

    Raises:
        InvalidParameterError: ``count`` is negative or above 1. ``train_model`` builds
            one Keras model with no ``tf.distribute`` strategy, so a second GPU would be
            reserved (and billed) and never used.
    """

    count: int = 1
    node_pool: str = "gpu-pool"
    node_pool_label: str = "cloud.google.com/gke-nodepool"
    shm_size: str = "2Gi"
    cpu: str = "4"
    memory: str = "16Gi"

    def __post_init__(self) -> None:
        """Refuse GPU counts the training code cannot use."""
        if self.count < 0 or self.count > 1:
            raise InvalidParameterError(
                "gpu count",
                self.count,
                "0 (CPU only) or 1",
                "train_model trains one replica without a tf.distribute strategy, so more GPUs "
                "would be reserved and never used; use a larger GPU (e.g. "
                "--gpu-node-pool a100) instead of more of them.",
            )

    @property
    def label(self) -> str:
        """``GPU`` or ``CPU``: what the training task's display name says it runs on."""
        return "GPU" if self.count > 0 else "CPU"

    def apply(self, task: dsl.PipelineTask) -> dsl.PipelineTask:
        """Place ``task`` on a GPU node (or only size its CPU/memory when ``count`` is 0)."""
        if self.count <= 0:
            return with_resources(task, Resources(self.cpu, self.memory, self.cpu, self.memory))
        return on_gpu(task, **asdict(self))


@dataclass(frozen=True)
class Resources:
    """Requests and limits of one task (Kubernetes quantities)."""

    cpu_request: str
    memory_request: str
    cpu_limit: str
    memory_limit: str


# Sized for the bundled data set with headroom for a few thousand more images; a task
# over its memory limit is OOM-killed and retried, so limits stay well above what the
# steps use here (largest: train ~0.9 GB, scripts/bench_pipeline.py).
STEP_RESOURCES: dict[str, Resources] = {
    "pull-data": Resources("500m", "1Gi", "2", "4Gi"),
    "import-labels": Resources("500m", "1Gi", "2", "4Gi"),
    "check-new-labels": Resources("100m", "256Mi", "500m", "512Mi"),
    "prepare-dataset": Resources("1", "2Gi", "2", "4Gi"),
    "evaluate-model": Resources("1", "2Gi", "2", "4Gi"),
    "package-model": Resources("500m", "1Gi", "1", "2Gi"),
    "deploy-model": Resources("250m", "512Mi", "1", "1Gi"),
    "push-predictions": Resources("500m", "1Gi", "2", "4Gi"),
    "create-inbox-tasks": Resources("250m", "512Mi", "1", "2Gi"),
    "detect-drift": Resources("500m", "1Gi", "2", "4Gi"),
    "raise-alert": Resources("250m", "512Mi", "1", "2Gi"),
    "register-model": Resources("250m", "512Mi", "1", "2Gi"),
    "promote-model": Resources("100m", "256Mi", "500m", "1Gi"),
}
"""Requests and limits of every CPU step, by task name (``train-model``: :class:`GpuOptions`)."""


@dataclass(frozen=True)
class RetryPolicy:
    """Retries with exponential backoff (Argo ``retryStrategy`` on a cluster)."""

    num_retries: int = 3
    backoff_duration: str = "30s"
    backoff_factor: float = 2.0
    backoff_max_duration: str = "10m"


@dataclass(frozen=True)
class ClusterOptions:
    """Compile-time cluster options shared by every step.

    Attributes:
        retry: Retry policy of the idempotent steps; None: no retries (local runs).
        gcs_key_secret: Secret (in the KFP namespace) with a service-account ``key.json``
            mounted into every step, with ``GOOGLE_APPLICATION_CREDENTIALS`` pointing at it.
            The KFP launcher runs inside the step's container, so it uses the same key.
            Empty on GKE (Workload Identity).
        serving_gcs_key_secret: Secret (in the serving namespace) with a READ-ONLY key that
            ``deploy_model`` mounts into the serving pods. Empty on GKE.

    Raises:
        InvalidParameterError: ``serving_gcs_key_secret`` names the pipeline's writable key.
    """

    retry: RetryPolicy | None = field(default_factory=RetryPolicy)
    gcs_key_secret: str = ""
    serving_gcs_key_secret: str = ""

    def __post_init__(self) -> None:
        """Keep the pipeline's writable key out of the serving pods."""
        if self.gcs_key_secret and self.serving_gcs_key_secret == self.gcs_key_secret:
            raise InvalidParameterError(
                "serving_gcs_key_secret",
                self.serving_gcs_key_secret,
                "a Secret other than the pipeline's writable gcs_key_secret",
                "Create a read-only key (roles/storage.objectViewer) in its own Secret, "
                "e.g. gcs-serving-credentials.",
            )

    def apply(self, task: dsl.PipelineTask, *, idempotent: bool) -> dsl.PipelineTask:
        """Set the retry policy (idempotent steps only) and the bucket credentials on ``task``."""
        if idempotent and self.retry is not None:
            task.set_retry(**asdict(self.retry))
        if self.gcs_key_secret:
            kubernetes.use_secret_as_volume(task, secret_name=self.gcs_key_secret, mount_path=GCS_KEY_DIR)
            task.set_env_variable("GOOGLE_APPLICATION_CREDENTIALS", f"{GCS_KEY_DIR}/key.json")
        return task


GKE = ClusterOptions()
"""Workload Identity gives every step the bucket; idempotent steps retry."""
KIND = ClusterOptions(gcs_key_secret="gcs-credentials", serving_gcs_key_secret="gcs-serving-credentials")
"""Key Secrets filled by ``scripts/kind_e2e.sh``: writable for steps, read-only for serving."""
LOCAL = ClusterOptions(retry=None)
"""``kfp.local``: no retries, so a failing step fails at once instead of sleeping."""
TARGETS = {"gke": GKE, "kind": KIND, "local": LOCAL}


def with_resources(task: dsl.PipelineTask, resources: Resources) -> dsl.PipelineTask:
    """Set CPU and memory requests and limits on ``task``."""
    task.set_cpu_request(resources.cpu_request).set_memory_request(resources.memory_request)
    return task.set_cpu_limit(resources.cpu_limit).set_memory_limit(resources.memory_limit)


def step(task: dsl.PipelineTask, name: str, cluster: ClusterOptions, *, idempotent: bool) -> dsl.PipelineTask:
    """Size a CPU step by :data:`STEP_RESOURCES` and apply ``cluster``'s options to it."""
    with_resources(task, STEP_RESOURCES[name])
    return cluster.apply(task, idempotent=idempotent)


def on_gpu(
    task: dsl.PipelineTask,
    count: int = 1,
    node_pool: str = "gpu-pool",
    node_pool_label: str = "cloud.google.com/gke-nodepool",
    shm_size: str = "2Gi",
    cpu: str = "4",
    memory: str = "16Gi",
) -> dsl.PipelineTask:
    """Run ``task`` on a GPU node: accelerator, node selector, GPU toleration, /dev/shm.

    Args:
        task: The training task.
        count: GPUs per task (``nvidia.com/gpu`` limit).
        node_pool: value of ``node_pool_label`` that selects the GPU node pool.
        node_pool_label: the node label naming pools (GKE's by default).
        shm_size: size of the memory-backed ``/dev/shm`` (tf.data and NCCL use it).
        cpu: CPU request and limit of the task.
        memory: memory request and limit of the task.
    """
    task.set_accelerator_type(GPU_RESOURCE).set_accelerator_limit(count)
    with_resources(task, Resources(cpu, memory, cpu, memory))
    if node_pool:
        kubernetes.add_node_selector(task, label_key=node_pool_label, label_value=node_pool)
    kubernetes.add_toleration(task, key=GPU_TAINT_KEY, operator="Exists", effect="NoSchedule")
    kubernetes.empty_dir_mount(
        task, volume_name="dshm", mount_path="/dev/shm", medium="Memory", size_limit=shm_size
    )
    return task


def with_secret_env(
    task: dsl.PipelineTask, secret_name: str, keys: dict[str, str], optional: bool = False
) -> dsl.PipelineTask:
    """Expose Kubernetes Secret keys as environment variables (``{key: ENV_NAME}``).

    ``optional``: the pod starts without the variables when the Secret is missing (for
    steps whose use of it is switched by a parameter).
    """
    kubernetes.use_secret_as_env(task, secret_name=secret_name, secret_key_to_env=keys, optional=optional)
    return task


MLFLOW_SECRET = "mlflow-tracking"
MLFLOW_ENV = {
    "MLFLOW_TRACKING_URI": "MLFLOW_TRACKING_URI",
    "MLFLOW_TRACKING_TOKEN": "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_USERNAME": "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD": "MLFLOW_TRACKING_PASSWORD",
}
"""Keys of the ``mlflow-tracking`` Secret, as MLflow's own variables (every key optional)."""


def with_mlflow_secret(task: dsl.PipelineTask, secret_name: str = MLFLOW_SECRET) -> dsl.PipelineTask:
    """MLflow's tracking URI and credentials from the Secret ``secret_name``, where it has them.

    Optional keys of an optional Secret: a cluster without a tracking server (``tracking``
    off) runs the same pipeline; a step that needs the server fails fast on the missing URI.
    """
    kubernetes.use_secret_as_env(task, secret_name=secret_name, secret_key_to_env=MLFLOW_ENV, optional=True)
    return task


def with_side_effects(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """Never reuse a cached result of a step that reads or changes the outside world."""
    task.set_caching_options(False)
    return task


DEFAULT_GPU = GpuOptions()
