"""GPU requests of the training step: fail at once when a requested GPU is not usable.

A task that reserved a GPU and trains on the CPU anyway still "succeeds", hours later,
having left the GPU idle (TensorFlow falls back to the CPU without a word when it cannot
load the node's driver). So the training step checks, before it trains, that the GPUs
given to its container are usable.

How many were given: :data:`GPU_COUNT_ENV` when set (a pod can set it from an annotation
through the downward API; the container tests set it), otherwise the number of NVIDIA
device nodes (``/dev/nvidia0``, ...) in the container: the NVIDIA device plugin adds them
only to containers with an ``nvidia.com/gpu`` limit. ``kfp.local`` ignores accelerator
settings, so a local run is never given a GPU. Stdlib only; TensorFlow is imported by
:func:`check_gpus` alone, and only when a GPU was given.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from planets_mlops.errors import AcceleratorError, InvalidParameterError

GPU_COUNT_ENV = "PLANETS_GPU_COUNT"
DEVICE_DIR = Path("/dev")
_GPU_DEVICE = re.compile(r"nvidia[0-9]+")
# Where GKE's GPU node pools mount the node's NVIDIA driver (images/Dockerfile, target train-gpu).
DRIVER_LIBRARY_DIR = "/usr/local/nvidia/lib64"


def gpu_devices(device_dir: Path = DEVICE_DIR) -> list[str]:
    """Names of the NVIDIA GPU device nodes in ``device_dir`` (``nvidia0``, ``nvidia1``...)."""
    try:
        return sorted(p.name for p in device_dir.iterdir() if _GPU_DEVICE.fullmatch(p.name))
    except OSError:
        return []


def requested_gpus(env: Mapping[str, str] | None = None, device_dir: Path = DEVICE_DIR) -> int:
    """GPUs given to this container: :data:`GPU_COUNT_ENV`, else its GPU device nodes.

    Raises:
        InvalidParameterError: the variable is set but not a non-negative integer.
    """
    raw = (os.environ if env is None else env).get(GPU_COUNT_ENV, "").strip()
    if not raw:
        return len(gpu_devices(device_dir))
    try:
        count = int(raw)
    except ValueError:
        count = -1
    if count < 0:
        raise InvalidParameterError(
            GPU_COUNT_ENV,
            raw,
            "a non-negative integer (the pod's nvidia.com/gpu limit)",
            "It is the number of GPUs given to the pod; unset it to count the GPU devices instead.",
        )
    return count


def require_gpus(
    requested: int, visible: Sequence[str], built_with_cuda: bool, library_path: str = ""
) -> list[str]:
    """Check that ``requested`` GPUs can be used; returns the GPUs training will use.

    Args:
        requested: GPUs the pod asked for (0: nothing to check).
        visible: names of the GPUs TensorFlow lists.
        built_with_cuda: whether this TensorFlow is a CUDA build.
        library_path: ``LD_LIBRARY_PATH`` of the process, quoted in the error.

    Raises:
        AcceleratorError: a GPU was requested and none is visible (with the likely cause),
            or fewer are visible than were requested (the others would stay reserved and
            idle). Several visible GPUs are trained on together (``MirroredStrategy``,
            :func:`planets_mlops.train.choose_strategy`).
    """
    if requested <= 0:
        return []
    if len(visible) >= requested:
        return list(visible[:requested])
    if visible:
        raise AcceleratorError(
            f"train_model was given {requested} GPUs but TensorFlow sees {len(visible)} "
            f"({', '.join(visible)}); the others would stay reserved and idle. Check the pod's "
            f"nvidia.com/gpu limit and {GPU_COUNT_ENV}, or compile with --gpu-count {len(visible)}."
        )
    if not built_with_cuda:
        cause = (
            "this TensorFlow is a CPU-only build: run train_model in the train-gpu image "
            "(TRAINING_GPU_IMAGE), not the CPU runtime image"
        )
    elif DRIVER_LIBRARY_DIR not in library_path.split(":"):
        cause = (
            f"LD_LIBRARY_PATH={library_path!r} lacks {DRIVER_LIBRARY_DIR}, where GKE mounts the "
            "node's libcuda.so.1: use the train-gpu image, which sets it"
        )
    else:
        cause = (
            "TensorFlow could not load a GPU: check that the node has an NVIDIA GPU and driver "
            "(nvidia-smi in the pod) and that the driver supports the CUDA of TensorFlow's wheels"
        )
    raise AcceleratorError(
        f"train_model was given {requested} GPU but TensorFlow sees "
        f"none, so it would train on the CPU: {cause}. To train on CPU on purpose, compile with "
        "--gpu-count 0."
    )


def check_gpus(env: Mapping[str, str] | None = None, device_dir: Path = DEVICE_DIR) -> list[str]:
    """Fail fast when GPUs given to this container are not usable; see :func:`require_gpus`.

    Returns:
        Names of the GPUs training will use (empty when none was given).
    """
    env = os.environ if env is None else env
    requested = requested_gpus(env, device_dir)
    if requested == 0:
        return []
    import tensorflow as tf

    visible = [device.name for device in tf.config.list_physical_devices("GPU")]
    return require_gpus(requested, visible, tf.test.is_built_with_cuda(), env.get("LD_LIBRARY_PATH", ""))
