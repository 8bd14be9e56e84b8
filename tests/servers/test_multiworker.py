"""Multi-worker training without a cluster: two local worker processes, a localhost
``TF_CONFIG``, ``MultiWorkerMirroredStrategy`` (each worker serves TensorFlow's collective
ops on 127.0.0.1). Both train the same model; the chief writes it, ONNX included.

What a Kubeflow Trainer TrainJob's pods would run (planets_mlops.multiworker.run_worker),
minus the JobSet hostnames; no cluster ran it here.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

from planets_mlops.model_folder import predict_logits
from planets_mlops.multiworker import tf_config
from planets_mlops.prepared import load_split

SCRIPT = Path(__file__).parents[1] / "support" / "multiworker_local.py"


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_local_workers_train_the_same_model_and_the_chief_writes_it(small_prepared, tmp_path):
    hosts = [f"127.0.0.1:{port}" for port in free_ports(2)]
    model_dir = tmp_path / "model"
    workers = []
    for index in range(2):
        config = {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}}
        workers.append(
            subprocess.Popen(
                [sys.executable, str(SCRIPT), str(small_prepared), str(model_dir), json.dumps(config)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outputs = []
    for worker in workers:
        out, err = worker.communicate(timeout=900)
        assert worker.returncode == 0, err[-3000:]
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    chief, other = outputs
    # The gradients are all-reduced every step: both workers hold the same weights.
    assert chief["history"] == other["history"]
    assert chief["metadata"]["distribution"] == {
        "strategy": "MultiWorkerMirroredStrategy",
        "replicas": 2,
        "workers": 2,
        "per_replica_batch_size": 16,
        "global_batch_size": 32,
        "lr_scaling": "linear",
        "lr": 0.02,
    }
    # The chief's folder, and the other worker's copy (kept for this comparison: a worker
    # removes it otherwise): the same weights, so the same logits.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "model-worker-1"]
    import keras

    images, _ = load_split(small_prepared, "validation")
    chief_logits = predict_logits(model_dir, images)
    assert np.allclose(chief_logits, predict_logits(tmp_path / "model-worker-1", images), atol=1e-6)
    keras_logits = keras.models.load_model(model_dir / "model.keras")(images, training=False).numpy()
    assert np.max(np.abs(keras_logits - chief_logits)) < 1e-4


def test_local_tf_config_is_what_the_workers_were_given():
    assert tf_config(["127.0.0.1"], 0, port=2222) == {
        "cluster": {"worker": ["127.0.0.1:2222"]},
        "task": {"type": "worker", "index": 0},
    }
