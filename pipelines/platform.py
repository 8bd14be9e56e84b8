"""Small named helpers that set platform options on tasks (GPU, secrets, caching).

Every kfp-kubernetes setting is ignored by ``kfp.local`` and applied on a cluster.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from kfp import dsl, kubernetes

GPU_RESOURCE = "nvidia.com/gpu"
GPU_TAINT_KEY = "nvidia.com/gpu"


@dataclass(frozen=True)
class GpuOptions:
    """Compile-time GPU placement of the training task (``count=0``: CPU only)."""

    count: int = 1
    node_pool: str = "gpu-pool"
    node_pool_label: str = "cloud.google.com/gke-nodepool"
    shm_size: str = "2Gi"
    cpu: str = "4"
    memory: str = "16Gi"

    def apply(self, task: dsl.PipelineTask) -> dsl.PipelineTask:
        """Place ``task`` on a GPU node (or only set its CPU/memory when ``count`` is 0)."""
        if self.count <= 0:
            return task.set_cpu_limit(self.cpu).set_memory_limit(self.memory)
        return on_gpu(task, **asdict(self))


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
        cpu: CPU limit of the task.
        memory: memory limit of the task.
    """
    task.set_accelerator_type(GPU_RESOURCE).set_accelerator_limit(count)
    task.set_cpu_limit(cpu).set_memory_limit(memory)
    if node_pool:
        kubernetes.add_node_selector(task, label_key=node_pool_label, label_value=node_pool)
    kubernetes.add_toleration(task, key=GPU_TAINT_KEY, operator="Exists", effect="NoSchedule")
    kubernetes.empty_dir_mount(
        task, volume_name="dshm", mount_path="/dev/shm", medium="Memory", size_limit=shm_size
    )
    return task


def with_secret_env(task: dsl.PipelineTask, secret_name: str, keys: dict[str, str]) -> dsl.PipelineTask:
    """Expose Kubernetes Secret keys as environment variables (``{key: ENV_NAME}``)."""
    kubernetes.use_secret_as_env(task, secret_name=secret_name, secret_key_to_env=keys)
    return task


def with_side_effects(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """Never reuse a cached result of a step that reads or changes the outside world."""
    task.set_caching_options(False)
    return task


DEFAULT_GPU = GpuOptions()
