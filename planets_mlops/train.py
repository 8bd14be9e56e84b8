"""Train the reference CNN with TensorFlow/Keras, deterministically, and export it.

Output: a model folder (:mod:`planets_mlops.model_folder` names its files): the Keras
model, the same model for ONNX Runtime, its classes, its preprocessing (with, under
``training_augmentation``, what training changed in the images: planets_mlops.augment),
the training history, the open-set guard (planets_mlops.guard) and the monitoring
reference profile of the validation images (planets_mlops.monitoring.reference).

The ONNX model has two outputs: ``logits`` (first, what evaluation and serving classify
with) and ``embedding``, the penultimate layer the guard scores.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from planets_mlops.accelerators import check_gpus
from planets_mlops.augment import NONE as NO_AUGMENT
from planets_mlops.augment import PHOTOMETRIC, augment_batch, benign_changes
from planets_mlops.augment import describe as describe_augment
from planets_mlops.errors import DataError, TrainingDivergedError
from planets_mlops.guard import EMBEDDING_OUTPUT, Guard
from planets_mlops.knobs import GuardParams, TrainParams
from planets_mlops.model_folder import (
    KERAS_FILE,
    LOGITS_OUTPUT,
    ONNX_FILE,
    predict_outputs,
    write_description,
)
from planets_mlops.monitoring.reference import ReferenceProfile, build_reference
from planets_mlops.prepared import iter_shards, load_manifest, load_split
from planets_mlops.progress import Progress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    """What training produced, besides the model folder.

    Attributes:
        params: The training parameters used.
        classes: Class names; the index is the model output.
        train_images: Number of training images.
        validation_images: Number of validation images.
        history: Per-epoch values of each Keras metric (``loss``, ``accuracy``,
            ``val_loss``, ``val_accuracy``).
        train_seconds: Wall-clock seconds from TensorFlow set-up to the last epoch.
        parameters: Number of model weights.
        framework: Framework name and version.
    """

    params: TrainParams
    classes: list[str]
    train_images: int
    validation_images: int
    history: dict[str, list[float]]
    train_seconds: float
    parameters: int
    framework: str

    @property
    def final(self) -> dict[str, float]:
        """The last epoch's value of each metric in ``history``."""
        return {key: values[-1] for key, values in self.history.items()}

    def metrics(self) -> dict[str, float]:
        """Values for the KFP Metrics output: ``train_<metric>`` and ``val_<metric>``."""
        return {
            (key if key.startswith("val_") else f"train_{key}"): value for key, value in self.final.items()
        }

    def metadata(self, source: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Metadata of the Model artifact.

        Args:
            source: Metadata of the prepared data set artifact (from ``prepare_dataset``);
                its ``source_commit``, ``source_dvc_hash``, ``source_base_commit`` and
                ``data_content_hash`` become the model's provenance.

        Returns:
            Framework, classes, parameter count, duration, provenance, the training
            augmentation (``augment``: its set; ``augmentation``: the changes it applies) and
            ``final_<metric>``.
        """
        source = source or {}
        return {
            "framework": self.framework,
            "augment": self.params.augment,
            "augmentation": [change["name"] for change in describe_augment(self.params.augment)["changes"]],
            "classes": self.classes,
            "parameters": self.parameters,
            "train_seconds": self.train_seconds,
            "data_commit": source.get("source_commit", ""),
            "data_dvc_hash": source.get("source_dvc_hash", ""),
            "data_base_commit": source.get("source_base_commit", ""),
            "data_content_hash": source.get("data_content_hash", ""),
            "train_params": {
                f"train_{name}": getattr(self.params, name)
                for name in ("lr", "epochs", "conv_size", "dense_size", "batch_size", "seed")
            },
            **{f"final_{key}": value for key, value in self.final.items()},
        }

    def history_json(self) -> str:
        """The history as JSON, the content of ``history.json``."""
        return json.dumps(self.history, indent=1)

    def curves_html(self) -> str:
        """An HTML page with the training curves (loss and accuracy per epoch)."""
        from planets_mlops.plots import plot_history

        return (
            "<html><body><h1>Training curves</h1>"
            f"<img src='data:image/png;base64,{plot_history(self.history)}'/></body></html>"
        )


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
    prepared_dir: Path,
    split: str,
    batch_size: int,
    order: np.ndarray | None = None,
    augment: str = NO_AUGMENT,
    seed: int = 0,
) -> tuple[int, Any]:
    """A generator factory over memory-mapped shards, visiting samples in ``order``.

    With ``augment`` (a set of :mod:`planets_mlops.augment`), each batch is changed with
    draws from one generator seeded with ``seed``; epochs draw on from where the last one
    stopped, so every epoch sees other changes and a seeded run repeats them all.
    """
    shards = list(iter_shards(prepared_dir, split))
    sizes = [len(labels) for _, labels in shards]
    offsets = np.cumsum([0] + sizes)
    total = int(offsets[-1])
    rng = np.random.default_rng(seed)

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
            yield augment_batch(images, rng, augment), labels

    return total, generate


def _datasets(tf: Any, prepared_dir: Path, manifest: dict, params: TrainParams) -> tuple[int, Any, int, Any]:
    """Training and validation ``tf.data`` pipelines over the shards, with their sizes."""
    signature = (
        tf.TensorSpec(shape=(None, *manifest["input_shape"]), dtype=tf.float32),
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
    n_train, train_gen = _batches(
        prepared_dir, "train", params.batch_size, order, augment=params.augment, seed=params.seed
    )
    n_val, val_gen = _batches(prepared_dir, "validation", params.batch_size)

    def dataset(generate: Any, count: int) -> Any:
        batches = -(-count // params.batch_size)
        return (
            tf.data.Dataset.from_generator(generate, output_signature=signature)
            .apply(tf.data.experimental.assert_cardinality(batches))
            .prefetch(2)
        )

    return n_train, dataset(train_gen, n_train), n_val, dataset(val_gen, n_val)


def with_embedding(model: Any) -> Any:
    """The trained model with two outputs: its logits and its penultimate-layer embedding."""
    from tensorflow import keras

    both = keras.Model(model.inputs, [model.outputs[0], model.layers[-2].output], name=model.name)
    both([np.zeros((1, *model.inputs[0].shape[1:]), np.float32)])  # built, as export needs
    return both


def fit_guard(
    predict: Callable[[np.ndarray], tuple[np.ndarray, Any]],
    prepared_dir: Path,
    coverage: float,
    seed: int = 0,
) -> tuple[Guard, ReferenceProfile]:
    """Fit the open-set guard (:mod:`planets_mlops.guard`) and the monitoring reference.

    ``predict`` gives the logits and embeddings of a batch; :func:`train_model` passes the
    exported ONNX model's, so the guard is fitted on exactly what is served (the class-wise
    score is sensitive to the last digits of a near-duplicate's embedding).

    The bank: the training images' embeddings, as they are and once more under random
    benign changes (:func:`planets_mlops.augment.augment_batch`, seeded with ``seed``),
    with their classes. The calibration: the validation images, as they are and under each
    fixed benign change (:data:`planets_mlops.augment.BENIGN`), those the model classifies
    right; each class's threshold keeps ``coverage`` of them.

    The validation images, the model's predictions and embeddings of them also make the
    monitoring reference profile (:mod:`planets_mlops.monitoring.reference`): what
    production inputs are compared with.
    """
    manifest = load_manifest(prepared_dir)
    train_images, train_labels = load_split(prepared_dir, "train")
    changed_train = augment_batch(train_images, np.random.default_rng(seed), PHOTOMETRIC)
    bank = np.concatenate([predict(x)[1] for x in (train_images, changed_train)])
    images, labels = load_split(prepared_dir, "validation")
    logits, embeddings = predict(images)
    calibration = [embeddings[np.argmax(logits, axis=-1) == labels]]
    for changed in benign_changes(images, seed).values():
        changed_logits, changed_embeddings = predict(changed)
        calibration.append(changed_embeddings[np.argmax(changed_logits, axis=-1) == labels])
    guard = Guard.fit(
        bank,
        np.concatenate(calibration),
        GuardParams(coverage=coverage),
        bank_labels=np.concatenate([train_labels, train_labels]),
    )
    classes = list(manifest["classes"])
    predictions = [classes[int(index)] for index in np.argmax(logits, axis=-1)]
    return guard, build_reference(images, predictions, classes, embeddings)


def _write_model_dir(
    model: Any, model_dir: Path, manifest: dict, history: dict, prepared_dir: Path, params: TrainParams
) -> Guard:
    """Save the model (Keras and ONNX), its classes, preprocessing, history, guard and reference."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    model.save(model_dir / KERAS_FILE)
    both = with_embedding(model)
    export_onnx(both, model_dir / ONNX_FILE, output_names=(LOGITS_OUTPUT, EMBEDDING_OUTPUT))
    guard, reference = fit_guard(
        lambda images: predict_outputs(model_dir, images), prepared_dir, params.guard_coverage, params.seed
    )
    guard.save(model_dir)
    reference.save(model_dir)
    preprocess = {**manifest["preprocess"], "training_augmentation": describe_augment(params.augment)}
    write_description(model_dir, manifest["classes"], preprocess, history)
    return guard


def _diverged(where: str, values: Mapping[str, Any], params: TrainParams) -> TrainingDivergedError:
    shown = ", ".join(f"{k}={float(v):g}" for k, v in values.items())
    return TrainingDivergedError(
        f"Training diverged at {where}: {shown} is not finite (train_lr={params.lr:g}). The "
        "weights are unusable and no model was written. Lower train_lr (the reference uses "
        "0.001) or check the prepared data."
    )


def _stop_on_non_finite_loss(keras: Any, params: TrainParams) -> Any:
    """A callback that raises on the first non-finite loss (TerminateOnNaN only stops quietly)."""

    class StopOnNonFiniteLoss(keras.callbacks.Callback):  # type: ignore[misc,name-defined]
        epoch = 0

        def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
            self.epoch = epoch

        def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(float(loss)):
                raise _diverged(f"epoch {self.epoch + 1}, batch {batch + 1}", {"loss": loss}, params)

        def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
            bad = {k: v for k, v in (logs or {}).items() if not math.isfinite(float(v))}
            if bad:
                raise _diverged(f"the end of epoch {epoch + 1}", bad, params)

    return StopOnNonFiniteLoss()


def _epoch_progress(keras: Any, epochs: int) -> Any:
    """A callback printing ``progress: epoch n of N (loss ..., val_accuracy ...)`` after each epoch."""

    class EpochProgress(keras.callbacks.Callback):  # type: ignore[misc,name-defined]
        def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
            self.progress = Progress("epoch", epochs)
            self.started = time.monotonic()

        def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
            figures: dict[str, float | str] = {k: float(v) for k, v in (logs or {}).items()}
            figures["elapsed"] = f"{time.monotonic() - self.started:.1f} s"
            self.progress.step(**figures)

    return EpochProgress()


def _check_finite_history(history: Mapping[str, list[float]], params: TrainParams) -> None:
    for key, values in history.items():
        for epoch, value in enumerate(values):
            if not math.isfinite(value):
                raise _diverged(f"epoch {epoch + 1}", {key: value}, params)


def train_model(prepared_dir: Path, model_dir: Path, params: TrainParams) -> TrainResult:
    """Train on the ``train`` split, validate on ``validation``, write the model folder.

    Args:
        prepared_dir: A folder written by ``prepare_dataset``.
        model_dir: Where the model folder goes (see the module docstring for its files).
        params: The training parameters.

    Returns:
        History, final metrics, sizes, duration and parameter count.

    Raises:
        DataError: the prepared data does not match ``params.output_classes``.
        AcceleratorError: a GPU was given to this container and TensorFlow sees none.
        TrainingDivergedError: a loss or metric became NaN or infinite; nothing is written.
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
    # A GPU given to this container but invisible to TensorFlow: stop now, not after
    # training on the CPU (planets_mlops.accelerators).
    check_gpus()
    n_train, train_ds, n_val, val_ds = _datasets(tf, prepared_dir, manifest, params)
    model = build_model(tuple(manifest["input_shape"]), len(classes), params.conv_size, params.dense_size)
    model.compile(
        optimizer=tf.keras.optimizers.Adam(params.lr),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    fit = model.fit(
        train_ds,
        epochs=params.epochs,
        validation_data=val_ds,
        shuffle=False,
        verbose=0,  # one progress line per epoch instead (planets_mlops.progress)
        callbacks=[_stop_on_non_finite_loss(tf.keras, params), _epoch_progress(tf.keras, params.epochs)],
    )
    history = {key: [float(v) for v in values] for key, values in fit.history.items()}
    _check_finite_history(history, params)
    duration = time.monotonic() - started
    guard = _write_model_dir(model, model_dir, manifest, history, prepared_dir, params)
    result = TrainResult(
        params=params,
        classes=classes,
        train_images=n_train,
        validation_images=n_val,
        history=history,
        train_seconds=round(duration, 2),
        parameters=int(model.count_params()),
        framework=f"tensorflow {tf.__version__}",
    )
    log.info(
        "Trained %d epochs on %d images in %.1f s: %s; guard keeps %.3f of its calibration images",
        params.epochs,
        n_train,
        duration,
        ", ".join(f"{k}={v:.4f}" for k, v in result.final.items()),
        guard.calibration["kept"],
    )
    return result


def export_onnx(model: Any, path: Path, output_names: tuple[str, ...] = ()) -> None:
    """Export the Keras model to ONNX, for serving without TensorFlow.

    Args:
        model: A built Keras model.
        path: The ``.onnx`` file to write.
        output_names: Names for the graph outputs, in order (the exporter's own names,
            ``Identity:0``..., say nothing); empty keeps them.
    """
    import io
    from contextlib import redirect_stdout

    # tf2onnx prints conversion chatter to stdout; keep it out of the task log.
    with redirect_stdout(io.StringIO()):
        model.export(str(path), format="onnx", verbose=False)
    if output_names:
        _rename_outputs(Path(path), output_names)


def _rename_outputs(path: Path, names: tuple[str, ...]) -> None:
    import onnx

    graph_model = onnx.load(str(path))
    outputs = graph_model.graph.output
    if len(outputs) != len(names):
        raise DataError(f"The ONNX export has {len(outputs)} outputs, not {len(names)} ({names}).")
    mapping = {output.name: name for output, name in zip(outputs, names)}
    for node in graph_model.graph.node:
        node.output[:] = [mapping.get(name, name) for name in node.output]
        node.input[:] = [mapping.get(name, name) for name in node.input]
    for output in outputs:
        output.name = mapping[output.name]
    onnx.checker.check_model(graph_model)
    onnx.save(graph_model, str(path))
