"""GPU fail-fast of the training step: the checks with TensorFlow's answers given, then the real
training entry point on this CPU-only machine.

The component-tier tests of test_accelerators (the rest: tests/pure/test_accelerators.py).
"""

import pytest

from planets_mlops.accelerators import (
    GPU_COUNT_ENV,
)
from planets_mlops.errors import AcceleratorError


def test_training_fails_fast_when_a_gpu_was_given_and_none_is_visible(small_prepared, tmp_path, monkeypatch):
    # The real training entry point on this CPU-only machine: it stops before training.
    from planets_mlops.train import TrainParams, train_model

    monkeypatch.setenv(GPU_COUNT_ENV, "1")
    with pytest.raises(AcceleratorError, match="was given 1 GPU but TensorFlow sees none"):
        train_model(small_prepared, tmp_path / "model", TrainParams(epochs=1, conv_size=8, dense_size=16))
    assert not (tmp_path / "model").exists()
