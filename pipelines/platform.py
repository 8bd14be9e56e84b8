"""Small named helpers that set platform options on tasks (GPU, resources, timeouts, retries, secrets).

Compile-time options come in two objects: :class:`GpuOptions` (where training runs) and
:class:`ClusterOptions` (retries, how step code reaches the bucket). ``kfp.local`` ignores
resources and every kfp-kubernetes setting, but it does honour retries (it sleeps through
each backoff), so the pipelines built for local runs use :data:`LOCAL` (no retries).
"""

from __future__ import annotations

import inspect
import re
import sys
from dataclasses import asdict, dataclass, field
from types import FrameType

from kfp import dsl, kubernetes

from planets_mlops.errors import InvalidParameterError
from planets_mlops.registry.settings import SECRET_ENV

_NO_MODULE = "<no module>"
"""Not a module name: what :func:`index_frozen_modules` records for a frame's file that no
loaded module holds."""


def index_frozen_modules() -> None:
    """Let ``inspect`` name frozen modules' frames from its cache, without scanning.

    KFP's task setters (``set_cpu_request``, ``set_display_name`` ...) call ``inspect.stack()``
    for the caller's name. For each frame of a frozen module (``<frozen runpy>`` under
    ``python -m``, the import system's inside an import) ``inspect.getmodule`` walks every
    loaded module, on every call: with TensorFlow loaded, building one pipeline took 2 CPU s
    instead of 0.1 s. Recording those file names in ``inspect``'s own file-to-module cache
    gives the answer the walk would (the frozen module) at once; nothing else changes.
    """
    for name, module in list(sys.modules.items()):
        spec = getattr(module, "__spec__", None)
        if spec is not None and spec.origin == "frozen":
            inspect.modulesbyfile.setdefault(f"<frozen {name}>", name)  # type: ignore[attr-defined]
    # Frames of code that no loaded module holds cost the same walk, on every call: code
    # run from a string (``<string>``) and files run as code rather than imported, as
    # pytest-xdist's workers run execnet and xdist/remote.py. Each frame on the stack now is
    # resolved once here, by the walk itself; where it finds no module, that answer is kept
    # (a name that is no module: ``getmodule`` answers None, as the walk did).
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if filename not in inspect.modulesbyfile and inspect.getmodule(frame, filename) is None:  # type: ignore[attr-defined]
            inspect.modulesbyfile[filename] = _NO_MODULE  # type: ignore[attr-defined]
        frame = frame.f_back


index_frozen_modules()

GPU_RESOURCE = "nvidia.com/gpu"
GPU_TAINT_KEY = "nvidia.com/gpu"
GCS_KEY_DIR = "/var/secrets/gcs"
"""Where a GCS key Secret is mounted in step containers (``key.json`` inside)."""


MAX_GPUS_PER_NODE = 8
"""The most GPUs one node offers (a2-highgpu-8g, a3-highgpu-8g): the highest ``--gpu-count``."""


@dataclass(frozen=True)
class GpuOptions:
    """Compile-time placement of the training task (``count=0``: CPU only).

    ``cpu`` and ``memory`` are the training task's requests and limits (equal, so the
    main container never uses more than the scheduler reserved for it). Empty: the
    defaults of the placement, :data:`GPU_TRAIN_RESOURCES` on a GPU node (g2-standard-8)
    and :data:`CPU_TRAIN_RESOURCES` without one, sized to fit one node of the documented
    CPU pool (e2-standard-4 after GKE's reservations, :data:`CPU_POOL_ALLOCATABLE`).

    The pod is Burstable, not Guaranteed: KFP's init container and Argo's ``wait``
    sidecar carry no limits in upstream's executor settings, and a pod is Guaranteed
    only when every container is.

    Raises:
        InvalidParameterError: ``count`` is negative or above :data:`MAX_GPUS_PER_NODE`
            (one node's GPUs; several nodes: :mod:`planets_mlops.multiworker`),
            or ``cpu``/``memory`` is not a Kubernetes quantity. Above 1, ``train_model``
            trains one replica per GPU (``MirroredStrategy``).
    """

    count: int = 1
    node_pool: str = "gpu-pool"
    node_pool_label: str = "cloud.google.com/gke-nodepool"
    shm_size: str = "2Gi"
    cpu: str = ""
    memory: str = ""

    def __post_init__(self) -> None:
        """Refuse GPU counts the training code cannot use and sizes that are not quantities."""
        if self.count < 0 or self.count > MAX_GPUS_PER_NODE:
            raise InvalidParameterError(
                "gpu count",
                self.count,
                f"0 (CPU only) to {MAX_GPUS_PER_NODE}",
                "Above 1, train_model trains one replica per GPU of one node (MirroredStrategy); "
                f"no node has more than {MAX_GPUS_PER_NODE}. For several nodes, see the "
                "multi-worker training in docs/scaling.md.",
            )
        for name, value in (("cpu", self.cpu), ("memory", self.memory)):
            if value:
                quantity(name, value)

    @property
    def label(self) -> str:
        """``GPU`` or ``CPU``: what the training task's display name says it runs on."""
        return "GPU" if self.count > 0 else "CPU"

    @property
    def sizes(self) -> tuple[str, str]:
        """``(cpu, memory)`` of the training task: the given ones, else the placement's."""
        default = GPU_TRAIN_RESOURCES if self.count > 0 else CPU_TRAIN_RESOURCES
        return self.cpu or default[0], self.memory or default[1]

    def apply(self, task: dsl.PipelineTask) -> dsl.PipelineTask:
        """Place ``task`` on a GPU node (or only size its CPU/memory when ``count`` is 0)."""
        cpu, memory = self.sizes
        if self.count <= 0:
            return with_resources(task, Resources(cpu, memory, cpu, memory))
        return on_gpu(task, **{**asdict(self), "cpu": cpu, "memory": memory})


GPU_TRAIN_RESOURCES = ("4", "16Gi")
"""Training on a GPU node (g2-standard-8: 8 vCPU, 32 GB): half of it, the rest for the system."""
CPU_POOL_ALLOCATABLE = ("3920m", "13.3Gi")
"""What GKE leaves to pods on one e2-standard-4 (4 vCPU, 16 GB): GKE reserves 80m CPU and
2.6 GiB memory (25% of the first 4 GiB, 20% of the next 4, 10% of the next 8) plus the
100 MiB eviction threshold."""
CPU_TRAIN_RESOURCES = ("3", "10Gi")
"""CPU-only training: fits :data:`CPU_POOL_ALLOCATABLE` with room for GKE's own DaemonSets
(kube-proxy, logging and metrics agents, CSI: under 0.5 CPU and 1 GiB together)."""

_QUANTITY = re.compile(r"^(\d+(\.\d+)?|\.\d+)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_SUFFIX = {
    "": 1.0, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
    "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50, "Ei": 2.0**60,
}  # fmt: skip


def quantity(name: str, value: str) -> float:
    """The number a Kubernetes quantity (``"500m"``, ``"4"``, ``"10Gi"``) stands for.

    Raises:
        InvalidParameterError: ``value`` is not a quantity.
    """
    found = _QUANTITY.match(str(value).strip())
    if not found:
        raise InvalidParameterError(
            name, value, "a Kubernetes quantity such as 2, 1500m, 8Gi or 8000Mi", f"Pass e.g. --{name} 2."
        )
    return float(found.group(1)) * _SUFFIX[found.group(3) or ""]


@dataclass(frozen=True)
class Resources:
    """Requests and limits of one task (Kubernetes quantities)."""

    cpu_request: str
    memory_request: str
    cpu_limit: str
    memory_limit: str


# Sized for the bundled data set with headroom for a few thousand more images; a task
# over its memory limit is OOM-killed and retried, so limits stay well above what the
# steps use here (largest: train ~0.9 GB, benchmarks/bench_pipeline.py).
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
    "resolve-production": Resources("100m", "256Mi", "500m", "512Mi"),
    "detect-drift": Resources("500m", "1Gi", "2", "4Gi"),
    "raise-alert": Resources("250m", "512Mi", "1", "2Gi"),
    "register-model": Resources("250m", "512Mi", "1", "2Gi"),
    "promote-model": Resources("100m", "256Mi", "500m", "1Gi"),
    # --train-nodes N: launches the TrainJob, copies shards and the model, follows the log.
    "train-multiworker": Resources("500m", "1Gi", "2", "4Gi"),
}
"""Requests and limits of every CPU step, by task name (``train-model``: :class:`GpuOptions`;
``train-multiworker``'s workers: :class:`GpuOptions` too, per worker)."""


# Each task's pod deadline (``activeDeadlineSeconds``): a hung clone, lock wait or image
# pull fails the attempt instead of blocking a schedule that runs one run at a time. About
# ten times what each step takes on the bundled data set (benchmarks/bench_pipeline.py), so
# a few thousand more images still fit; training: CPU-only epochs are the slow case.
STEP_TIMEOUTS: dict[str, int] = {
    "pull-data": 30 * 60,
    "import-labels": 30 * 60,
    "check-new-labels": 10 * 60,
    "prepare-dataset": 30 * 60,
    "train-model": 4 * 3600,
    # The TrainJob's deadline (knobs.MAX_TRAINJOB_DEADLINE_S at most) plus the copies.
    "train-multiworker": 4 * 3600,
    "evaluate-model": 30 * 60,
    "package-model": 30 * 60,
    "deploy-model": 30 * 60,
    "push-predictions": 30 * 60,
    "create-inbox-tasks": 30 * 60,
    "detect-drift": 30 * 60,
    "raise-alert": 10 * 60,
    "resolve-production": 10 * 60,
    "register-model": 20 * 60,
    "promote-model": 10 * 60,
}
"""Seconds each task may run per attempt, by task name (every task of every pipeline)."""


@dataclass(frozen=True)
class RetryPolicy:
    """Retries with exponential backoff: Argo's ``retryStrategy`` on a cluster.

    KFP 2.17 compiles ``set_retry`` to ``limit``, ``backoff.duration``, ``backoff.factor``
    and ``backoff.maxDuration`` (``backend/src/v2/compiler/argocompiler/container.go``),
    never a ``retryPolicy``: Argo takes that from the workflow controller's
    ``templateDefaults``, ``OnError`` in upstream's install, which retries Argo errors only.
    ``kustomize/argo/workflow-defaults.yaml`` sets it to ``Always`` (docs/cluster-loop.md).

    ``backoff.maxDuration`` is NOT a cap on one wait: Argo v4 measures it from the first
    attempt's start, fails the task once it is over and kills a retry's pod at it
    (``workflow/controller/operator.go``, ``processNodeRetries``). So :meth:`window` sizes
    it for every attempt running to its timeout plus every wait.
    """

    num_retries: int = 3
    backoff_duration: str = "30s"
    backoff_factor: float = 2.0

    def waits(self) -> list[int]:
        """Seconds Argo waits before each retry: duration x factor^(retry - 1)."""
        from kfp.dsl.structures import convert_duration_to_seconds

        base = convert_duration_to_seconds(self.backoff_duration)
        return [int(base * self.backoff_factor**i) for i in range(self.num_retries)]

    def window(self, timeout_s: int) -> str:
        """``backoff.maxDuration`` for a task of ``timeout_s`` per attempt: room for all of them."""
        return f"{(self.num_retries + 1) * timeout_s + sum(self.waits())}s"

    def apply(self, task: dsl.PipelineTask, timeout_s: int) -> dsl.PipelineTask:
        """Set this policy on ``task`` (``num_retries=0``: an explicit "never retry")."""
        return task.set_retry(
            num_retries=self.num_retries,
            backoff_duration=self.backoff_duration,
            backoff_factor=self.backoff_factor,
            backoff_max_duration=self.window(timeout_s),
        )


NEVER_RETRY = RetryPolicy(num_retries=0, backoff_duration="0s")
"""Compiled as Argo ``limit: "0"``, which overrides the controller's default limit (2 in
upstream's ``templateDefaults``): steps with outside effects that must not run twice."""


@dataclass(frozen=True)
class ClusterOptions:
    """Compile-time cluster options shared by every step.

    Attributes:
        retry: Retry policy of the idempotent steps; None: no retry settings at all (local
            runs: ``kfp.local`` sleeps through each backoff).
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

    def apply(self, task: dsl.PipelineTask, name: str, *, idempotent: bool) -> dsl.PipelineTask:
        """Timeout, retries and bucket credentials of task ``name`` (a key of :data:`STEP_TIMEOUTS`).

        Idempotent steps get :attr:`retry`; the others :data:`NEVER_RETRY`, so that the
        controller's default retries (Argo errors, twice, upstream) do not run them again.
        """
        timeout_s = STEP_TIMEOUTS[name]
        kubernetes.set_timeout(task, timeout_s)
        if self.retry is not None:
            (self.retry if idempotent else NEVER_RETRY).apply(task, timeout_s)
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
    return cluster.apply(task, name, idempotent=idempotent)


def on_gpu(
    task: dsl.PipelineTask,
    count: int = 1,
    node_pool: str = "gpu-pool",
    node_pool_label: str = "cloud.google.com/gke-nodepool",
    shm_size: str = "2Gi",
    cpu: str = GPU_TRAIN_RESOURCES[0],
    memory: str = GPU_TRAIN_RESOURCES[1],
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
MLFLOW_ENV = SECRET_ENV
"""Keys of the ``mlflow-tracking`` Secret -> the step's variables (every key optional).

Not MLflow's own names: KFP 2.17's MLflow plugin, when a cluster turns it on, sets
``MLFLOW_TRACKING_URI`` (and, with bearer or basic auth, the credential variables) in the
same container, and two definitions of one variable make an ambiguous pod. The steps adopt
these as MLflow's variables where the plugin set none (``registry.settings.adopt_secret_env``).
"""


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
