"""Several replicas without a GPU: MirroredStrategy over two logical CPU devices trains,
exports ONNX that matches Keras, and records the global batch and the scaled learning rate.

A whole training run in a child process (about 10 CPU s), so it runs with the other
trainings of this tier in `make test`, not in `make test-fast`; what the component tier keeps
of it: tests/component/test_distributed_training.py (the metadata it must record).

The logical devices are set up in a child process (tests/support/logical_devices.py): the
split cannot be undone and would change every later test's TensorFlow.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from planets_mlops.model_folder import predict_logits
from planets_mlops.prepared import load_split

SCRIPT = Path(__file__).parents[1] / "support" / "logical_devices.py"


def test_two_logical_cpu_devices_train_export_onnx_and_match_keras(small_prepared, tmp_path):
    model_dir = tmp_path / "model"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(small_prepared), str(model_dir)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(report["devices"]) == 2
    distribution = report["metadata"]["distribution"]
    assert distribution == {
        "strategy": "MirroredStrategy",
        "replicas": 2,
        "workers": 1,
        "per_replica_batch_size": 16,
        "global_batch_size": 32,
        "lr_scaling": "linear",
        "lr": 0.02,
    }
    history = json.loads((model_dir / "history.json").read_text())
    assert len(history["loss"]) == 2 and all(np.isfinite(history["loss"]))

    import keras

    images, labels = load_split(small_prepared, "validation")
    keras_logits = keras.models.load_model(model_dir / "model.keras")(images, training=False).numpy()
    onnx_logits = predict_logits(model_dir, images)
    assert np.max(np.abs(keras_logits - onnx_logits)) < 1e-4
    assert (model_dir / "guard.json").is_file()
