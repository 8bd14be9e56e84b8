"""Train on two logical CPU devices under MirroredStrategy, in a process of its own.

Run by tests/component/test_distributed_training.py as a script (``python
tests/support/logical_devices.py PREPARED MODEL_DIR``): splitting the CPU into logical
devices must happen before TensorFlow initialises its runtime and cannot be undone, so it
never runs inside the test process. Prints the training result's metadata as JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(prepared: str, model_dir: str) -> None:
    from planets_mlops.train import TrainParams, configure_tensorflow, train_model

    params = TrainParams(epochs=2, conv_size=8, dense_size=16, lr=0.01, batch_size=16)
    tf = configure_tensorflow(params.seed, params.threads)
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
    )
    devices = [device.name for device in tf.config.list_logical_devices("CPU")]
    strategy = tf.distribute.MirroredStrategy(devices)
    result = train_model(Path(prepared), Path(model_dir), params, strategy=strategy)
    print(json.dumps({"devices": devices, "metadata": result.metadata()}))


if __name__ == "__main__":
    main(*sys.argv[1:3])
