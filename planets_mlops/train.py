"""Train the reference CNN with TensorFlow/Keras, deterministically, and export it.

Outputs in the model folder:
    model.keras        the trained Keras model
    model.onnx         the same model for ONNX Runtime (evaluation and serving)
    classes.json       class names, index = model output
    preprocess.json    how images become model input (see planets_mlops.preprocess)
    history.json       per-epoch loss/accuracy/val_loss/val_accuracy
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from planets_mlops.errors import DataError
from planets_mlops.knobs import TrainParams
from planets_mlops.prepare import iter_shards, load_manifest

log = logging.getLogger(__name__)

MODEL_FILE = "model.keras"
ONNX_FILE = "model.onnx"
CLASSES_FILE = "classes.json"
PREPROCESS_FILE = "preprocess.json"
HISTORY_FILE = "history.json"


def configure_tensorflow(seed: int, threads: int = 0) -> Any:
    """Import TensorFlow with seeds and deterministic ops; returns the module."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    if threads:
        tf.config.threading.set_inter_op_parallelism_threads(threads)
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    # Python, NumPy and TensorFlow seeds, as the reference experiment sets them (Keras 3
    # draws its initialiser seeds from Python's generator).
    random.seed(seed)
    np.random.seed(seed)
    tf.random.set_seed(seed)
    tf.config.experimental.enable_op_determinism()
    return tf


def build_model(input_shape: tuple[int, ...], classes: int, conv_size: int, dense_size: int) -> Any:
    """The reference CNN: Conv2D(3x3, relu) -> MaxPool(3x3) -> Flatten -> Dense(relu) -> logits."""
    from tensorflow import keras

    return keras.Sequential(
        [
            keras.Input(shape=tuple(input_shape), name="image"),
            keras.layers.Conv2D(conv_size, (3, 3), activation="relu"),
            keras.layers.MaxPooling2D((3, 3)),
            keras.layers.Flatten(),
            keras.layers.Dense(dense_size, activation="relu"),
            keras.layers.Dense(classes, name="logits"),
        ],
        name="planets_cnn",
    )


def _batches(
    prepared_dir: Path, split: str, batch_size: int, order: np.ndarray | None = None
) -> tuple[int, Any]:
    """A generator factory over memory-mapped shards, visiting samples in ``order``."""
    shards = list(iter_shards(prepared_dir, split))
    sizes = [len(labels) for _, labels in shards]
    offsets = np.cumsum([0] + sizes)
    total = int(offsets[-1])

    def generate() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for start in range(0, total, batch_size):
            chosen = (
                np.arange(start, min(start + batch_size, total))
                if order is None
                else order[start : start + batch_size]
            )
            shard_of = np.searchsorted(offsets, chosen, side="right") - 1
            images = np.stack([shards[s][0][i - offsets[s]] for s, i in zip(shard_of, chosen)])
            labels = np.asarray([shards[s][1][i - offsets[s]] for s, i in zip(shard_of, chosen)])
            yield images, labels

    return total, generate


def train_model(prepared_dir: Path, model_dir: Path, params: TrainParams) -> dict[str, Any]:
    """Train on the ``train`` split, validate on ``validation``, write the model folder.

    Returns:
        Summary: final metrics, history, epochs, duration, parameter count.

    Raises:
        DataError: the prepared data does not match ``params.output_classes``.
    """
    manifest = load_manifest(prepared_dir)
    classes = manifest["classes"]
    if params.output_classes and params.output_classes != len(classes):
        raise DataError(
            f"output_classes={params.output_classes} but the prepared data has {len(classes)} "
            f"classes {classes}. Set output_classes to {len(classes)} or 0 (take it from the data)."
        )
    started = time.monotonic()
    tf = configure_tensorflow(params.seed, params.threads)
    input_shape = tuple(manifest["input_shape"])
    signature = (
        tf.TensorSpec(shape=(None, *input_shape), dtype=tf.float32),
        tf.TensorSpec(shape=(None,), dtype=tf.int32),
    )
    n_train = int(manifest["splits"]["train"]["count"])
    # The reference experiment shuffles once with a seeded tf.data buffer of 8 batches and
    # then trains every epoch in that order; the same order reproduces its results.
    order = np.fromiter(
        tf.data.Dataset.range(n_train)
        .shuffle(params.batch_size * 8, seed=params.seed, reshuffle_each_iteration=False)
        .as_numpy_iterator(),
        dtype=np.int64,
    )
    n_train, train_gen = _batches(prepared_dir, "train", params.batch_size, order)
    n_val, val_gen = _batches(prepared_dir, "validation", params.batch_size)

    def dataset(generate: Any, count: int) -> Any:
        batches = -(-count // params.batch_size)
        return (
            tf.data.Dataset.from_generator(generate, output_signature=signature)
            .apply(tf.data.experimental.assert_cardinality(batches))
            .prefetch(2)
        )

    train_ds = dataset(train_gen, n_train)
    val_ds = dataset(val_gen, n_val)

    model = build_model(input_shape, len(classes), params.conv_size, params.dense_size)
    model.compile(
        optimizer=tf.keras.optimizers.Adam(params.lr),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    fit = model.fit(train_ds, epochs=params.epochs, validation_data=val_ds, shuffle=False, verbose=2)
    history = {key: [float(v) for v in values] for key, values in fit.history.items()}
    duration = time.monotonic() - started

    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    model.save(model_dir / MODEL_FILE)
    export_onnx(model, model_dir / ONNX_FILE)
    (model_dir / CLASSES_FILE).write_text(json.dumps(classes))
    (model_dir / PREPROCESS_FILE).write_text(json.dumps(manifest["preprocess"]))
    (model_dir / HISTORY_FILE).write_text(json.dumps(history, indent=1))
    summary = {
        "params": asdict(params),
        "classes": classes,
        "train_images": n_train,
        "validation_images": n_val,
        "history": history,
        "final": {key: values[-1] for key, values in history.items()},
        "train_seconds": round(duration, 2),
        "parameters": int(model.count_params()),
        "framework": f"tensorflow {tf.__version__}",
    }
    log.info(
        "Trained %d epochs on %d images in %.1f s: %s",
        params.epochs,
        n_train,
        duration,
        ", ".join(f"{k}={v:.4f}" for k, v in summary["final"].items()),
    )
    return summary


def export_onnx(model: Any, path: Path) -> None:
    """Export the Keras model to ONNX, for serving without TensorFlow."""
    import io
    from contextlib import redirect_stdout

    # tf2onnx prints conversion chatter to stdout; keep it out of the task log.
    with redirect_stdout(io.StringIO()):
        model.export(str(path), format="onnx", verbose=False)
