"""How training records its spread over devices, without training (the component tier's part).

The two-logical-device training run itself, which exports ONNX and checks it against Keras,
is in tests/pipeline/test_distributed_training.py (`make test`); the same settings here give the
metadata it asserts.
"""

from __future__ import annotations


def test_two_replicas_record_the_global_batch_and_the_scaled_lr():
    # tests/support/logical_devices.py's settings (batch 16 per replica, lr 0.01) on 2 devices.
    from planets_mlops.train import TrainParams, distribution_of

    params = TrainParams(epochs=2, conv_size=8, dense_size=16, lr=0.01, batch_size=16)
    assert distribution_of("MirroredStrategy", 2, params) == {
        "strategy": "MirroredStrategy",
        "replicas": 2,
        "workers": 1,
        "per_replica_batch_size": 16,
        "global_batch_size": 32,
        "lr_scaling": "linear",
        "lr": 0.02,
    }


def test_one_replica_records_no_scaling():
    from planets_mlops.train import TrainParams, distribution_of

    assert distribution_of("default", 1, TrainParams(lr=0.01)) == {
        "strategy": "default",
        "replicas": 1,
        "workers": 1,
        "per_replica_batch_size": 32,
        "global_batch_size": 32,
        "lr_scaling": "none",
        "lr": 0.01,
    }
