"""GPU fail-fast of the training step: the checks with TensorFlow's answers given, then the
real training entry point on this CPU-only machine."""

import pytest

from planets_mlops.accelerators import (
    DRIVER_LIBRARY_DIR,
    GPU_COUNT_ENV,
    check_gpus,
    gpu_devices,
    requested_gpus,
    require_gpus,
)
from planets_mlops.errors import AcceleratorError, InvalidParameterError

GKE_PATH = f"{DRIVER_LIBRARY_DIR}:/usr/local/nvidia/lib"


@pytest.mark.parametrize(("value", "count"), [(None, 0), ("", 0), (" 0 ", 0), ("1", 1), ("2", 2)])
def test_requested_gpus_from_the_environment(value, count, tmp_path):
    env = {} if value is None else {GPU_COUNT_ENV: value}
    assert requested_gpus(env, device_dir=tmp_path) == count


def test_without_the_variable_the_gpu_device_nodes_count(tmp_path):
    for name in ("nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm", "nvme0"):
        (tmp_path / name).touch()
    assert gpu_devices(tmp_path) == ["nvidia0", "nvidia1"]
    assert requested_gpus({}, device_dir=tmp_path) == 2
    assert requested_gpus({GPU_COUNT_ENV: "0"}, device_dir=tmp_path) == 0  # the variable wins
    assert requested_gpus({}, device_dir=tmp_path / "missing") == 0


@pytest.mark.parametrize("value", ["one", "-1", "1.5"])
def test_a_bad_gpu_count_names_the_variable_and_value(value):
    with pytest.raises(InvalidParameterError, match=rf"Invalid {GPU_COUNT_ENV}='{value}'"):
        requested_gpus({GPU_COUNT_ENV: value})


def test_nothing_requested_nothing_checked(tmp_path):
    assert require_gpus(0, [], built_with_cuda=False) == []
    # No request: TensorFlow is not even imported.
    assert check_gpus({}, device_dir=tmp_path) == []


def test_a_visible_gpu_is_used():
    assert require_gpus(1, ["/physical_device:GPU:0"], True, GKE_PATH) == ["/physical_device:GPU:0"]


def test_requested_but_invisible_fails_with_the_driver_path_cause():
    with pytest.raises(AcceleratorError, match="sees none") as info:
        require_gpus(1, [], built_with_cuda=True, library_path="/usr/lib")
    assert DRIVER_LIBRARY_DIR in str(info.value) and "LD_LIBRARY_PATH='/usr/lib'" in str(info.value)
    assert "--gpu-count 0" in str(info.value)


def test_requested_on_a_cpu_build_names_the_image():
    with pytest.raises(AcceleratorError, match="CPU-only build.*train-gpu image"):
        require_gpus(1, [], built_with_cuda=False, library_path=GKE_PATH)


def test_requested_with_driver_path_but_no_device_points_at_the_node():
    with pytest.raises(AcceleratorError, match="nvidia-smi"):
        require_gpus(1, [], built_with_cuda=True, library_path=GKE_PATH)


def test_several_visible_gpus_are_all_used():
    # MirroredStrategy trains one replica on each (planets_mlops.train.choose_strategy).
    gpus = ["/physical_device:GPU:0", "/physical_device:GPU:1"]
    assert require_gpus(2, gpus, True, GKE_PATH) == gpus


def test_fewer_visible_gpus_than_requested_is_refused_rather_than_left_idle():
    with pytest.raises(AcceleratorError, match="given 2 GPUs but TensorFlow sees 1.*--gpu-count 1"):
        require_gpus(2, ["/physical_device:GPU:0"], True, GKE_PATH)


def test_gpu_names_become_replica_devices():
    from planets_mlops.train import gpu_replica_devices

    assert gpu_replica_devices(["/physical_device:GPU:0", "/physical_device:GPU:1"]) == ["/gpu:0", "/gpu:1"]
