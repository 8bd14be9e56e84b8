"""Training with TensorFlow in a child process, the ONNX model written from the weights.

(Pipeline tier: its tests start TensorFlow training child processes, ~20 s in all.) The training task
runs :func:`planets_mlops.train.train_model_in_child`: TensorFlow fits in a
child process that ends without its teardown, the parent (no TensorFlow) writes the ONNX
model from the weights (:mod:`planets_mlops.cnn_onnx`) and fits the guard with the image work
done while the child trained. Every output must be what one process writes.
"""

import json

import numpy as np
import pytest

from planets_mlops.cnn_onnx import SPEC_FILE, cnn_graph, cnn_spec
from planets_mlops.errors import TrainingDivergedError
from planets_mlops.model_folder import load_session, run_outputs
from planets_mlops.prepared import load_split
from planets_mlops.train import (
    GuardInputs,
    TrainParams,
    export_onnx,
    fit_guard,
    train_model_in_child,
    with_embedding,
)

TINY = TrainParams(epochs=2, conv_size=8, dense_size=16, lr=0.01, lr_schedule="constant")
GUARD_FILES = ("guard.json", "guard_bank.npy", "guard_images.npy", "monitoring_reference.json")


@pytest.fixture(scope="module")
def child_models(small_prepared, tmp_path_factory):
    """Two trainings in child processes with the same parameters, and their results."""
    folder = tmp_path_factory.mktemp("child")
    return [(folder / name, train_model_in_child(small_prepared, folder / name, TINY)) for name in ("a", "b")]


def test_training_in_a_child_repeats_to_the_bit_and_leaves_a_whole_model_folder(child_models, small_prepared):
    (first, one), (second, two) = child_models
    assert one.history == two.history and len(one.history["loss"]) == 2
    assert one.metadata() | {"train_seconds": 0} == two.metadata() | {"train_seconds": 0}
    assert one.framework.startswith("tensorflow ") and one.parameters > 0
    assert (one.train_images, one.validation_images) == (48, 12)
    for name in (
        "model.keras",
        "model.onnx",
        "classes.json",
        "preprocess.json",
        "history.json",
        *GUARD_FILES,
    ):
        assert (first / name).is_file(), name
        if name not in ("model.keras", "model.onnx"):
            assert (first / name).read_bytes() == (second / name).read_bytes(), name
    # The weights handed over by the child are gone once exported.
    assert not (first / SPEC_FILE).exists()
    assert json.loads((first / "history.json").read_text()) == one.history
    images, _ = load_split(small_prepared, "validation")
    a, b = run_outputs(load_session(first), images), run_outputs(load_session(second), images)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_the_guard_fitted_while_the_child_trained_is_the_guard_fitted_after(
    child_models, small_prepared, tmp_path
):
    """GuardInputs computed ahead (primed) give the guard and reference of a plain fit."""
    folder, _ = child_models[0]
    session = load_session(folder)
    guard, reference = fit_guard(
        lambda images: run_outputs(session, images), small_prepared, TINY.guard_coverage, TINY.seed
    )
    primed = GuardInputs(small_prepared, TINY.seed)
    primed.prime()
    guard_primed, reference_primed = fit_guard(
        lambda images: run_outputs(session, images), small_prepared, TINY.guard_coverage, TINY.seed, primed
    )
    for fitted, ref, out in (
        (guard, reference, tmp_path / "plain"),
        (guard_primed, reference_primed, tmp_path / "primed"),
    ):
        out.mkdir()
        fitted.save(out)
        ref.save(out)
    for name in GUARD_FILES:
        assert (tmp_path / "plain" / name).read_bytes() == (tmp_path / "primed" / name).read_bytes(), name
        assert (tmp_path / "plain" / name).read_bytes() == (folder / name).read_bytes(), name


def test_the_onnx_model_from_the_weights_answers_as_keras_export_to_the_bit(
    child_models, small_prepared, tmp_path
):
    import keras
    import onnxruntime as ort

    folder, _ = child_models[0]
    model = keras.models.load_model(folder / "model.keras")
    export_onnx(with_embedding(model), tmp_path / "keras.onnx", output_names=("logits", "embedding"))
    spec = cnn_spec(model)
    assert spec is not None
    written = cnn_graph(spec, ("logits", "embedding"))
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    ours = ort.InferenceSession(written.SerializeToString(), options, providers=["CPUExecutionProvider"])
    theirs = ort.InferenceSession(str(tmp_path / "keras.onnx"), options, providers=["CPUExecutionProvider"])
    assert [o.name for o in ours.get_outputs()] == ["logits", "embedding"]
    assert ours.get_inputs()[0].name == theirs.get_inputs()[0].name == "image"
    images, _ = load_split(small_prepared, "validation")
    noisy = np.clip(images + np.random.default_rng(0).normal(0, 0.1, images.shape), 0, 1).astype(np.float32)
    for batch in (images, images[:1], noisy):
        assert all(np.array_equal(x, y) for x, y in zip(run_outputs(ours, batch), run_outputs(theirs, batch)))
    # The served model is this one: the folder's ONNX answers the same.
    assert np.array_equal(run_outputs(load_session(folder), images)[0], run_outputs(ours, images)[0])
    # And it is Keras' model: the same logits within float error.
    assert np.max(np.abs(model(images, training=False).numpy() - run_outputs(ours, images)[0])) < 1e-4


def test_a_layout_other_than_the_reference_cnn_is_left_to_keras_export():
    import keras

    other = keras.Sequential([keras.Input(shape=(4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
    assert cnn_spec(other) is None
    same_layers_other_padding = keras.Sequential(
        [
            keras.Input(shape=(8, 8, 1)),
            keras.layers.Conv2D(2, (3, 3), activation="relu", padding="same"),
            keras.layers.MaxPooling2D((2, 2)),
            keras.layers.Flatten(),
            keras.layers.Dense(4, activation="relu"),
            keras.layers.Dense(3),
        ]
    )
    assert cnn_spec(same_layers_other_padding) is None


def test_a_child_that_diverges_raises_the_same_error_and_writes_no_model(small_prepared, tmp_path):
    params = TrainParams(epochs=2, conv_size=8, dense_size=16, lr=1e30)
    with pytest.raises(
        TrainingDivergedError, match=r"Training diverged at epoch 1.*not finite.*train_lr=1e\+30"
    ):
        train_model_in_child(small_prepared, tmp_path / "model", params)
    assert not (tmp_path / "model" / "model.onnx").exists()


def test_a_gpu_given_and_not_seen_stops_the_child_before_training(small_prepared, tmp_path, monkeypatch):
    from planets_mlops.accelerators import GPU_COUNT_ENV
    from planets_mlops.errors import AcceleratorError

    monkeypatch.setenv(GPU_COUNT_ENV, "1")  # the child inherits the task's environment
    with pytest.raises(AcceleratorError, match="was given 1 GPU but TensorFlow sees none"):
        train_model_in_child(small_prepared, tmp_path / "model", TINY)
    assert not (tmp_path / "model" / "model.onnx").exists()


def test_tensorflow_is_imported_for_training_without_keras_optional_packages():
    """configure_tensorflow's first import leaves out scikit-learn, Matplotlib, pandas and SciPy
    (about 2 of its 4.5 CPU s; training the same weights, to the bit, is the first test's), and
    they import as usual after it."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from planets_mlops.train import KERAS_OPTIONAL_IMPORTS, configure_tensorflow\n"
        "tf = configure_tensorflow(1, 1)\n"
        "from tensorflow import keras\n"
        "print(sorted(n for n in KERAS_OPTIONAL_IMPORTS if n in sys.modules))\n"
        "import scipy.sparse, sklearn, pandas, matplotlib.pyplot\n"
        "print('imported after')\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["[]", "imported after"]
