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
from planets_mlops.imagestats import image_statistics
from planets_mlops.knobs import GuardParams, TrainParams
from planets_mlops.metric_names import training_names
from planets_mlops.model_folder import (
    KERAS_FILE,
    LOGITS_OUTPUT,
    ONNX_FILE,
    predict_outputs,
    write_description,
)
from planets_mlops.monitoring.features import image_features
from planets_mlops.monitoring.reference import ReferenceProfile, build_reference
from planets_mlops.prepared import iter_shards, load_manifest
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
        distribution: How training was spread (:func:`distribution_of`): ``strategy``,
            ``replicas``, ``workers``, ``per_replica_batch_size``, ``global_batch_size``,
            ``lr_scaling`` and the ``lr`` the optimiser used.
    """

    params: TrainParams
    classes: list[str]
    train_images: int
    validation_images: int
    history: dict[str, list[float]]
    train_seconds: float
    parameters: int
    framework: str
    distribution: dict[str, Any] | None = None

    @property
    def final(self) -> dict[str, float]:
        """The last epoch's value of each metric in ``history``."""
        return {key: values[-1] for key, values in self.history.items()}

    def metrics(self) -> dict[str, float]:
        """The last epoch's values under their declared names (:mod:`planets_mlops.metric_names`).

        ``train_loss``, ``train_accuracy``, ``val_loss`` and ``val_accuracy``: the KFP Metrics
        output and the model's metadata.
        """
        return training_names(self.final)

    def metadata(self, source: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Metadata of the Model artifact.

        Args:
            source: Metadata of the prepared data set artifact (from ``prepare_dataset``);
                its ``source_commit``, ``source_dvc_hash``, ``source_base_commit`` and
                ``data_content_hash`` become the model's provenance.

        Returns:
            Framework, classes, parameter count, duration, provenance, the training
            augmentation (``augment``: its set; ``augmentation``: the changes it applies) and
            the last epoch's metrics (:meth:`metrics`).
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
                for name in ("lr", "lr_schedule", "epochs", "conv_size", "dense_size", "batch_size", "seed")
            },
            "distribution": self.distribution or distribution_of("default", 1, self.params),
            **self.metrics(),
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
        try:
            tf.config.threading.set_inter_op_parallelism_threads(threads)
            tf.config.threading.set_intra_op_parallelism_threads(threads)
        except RuntimeError:
            # TensorFlow's runtime was started earlier in this process, by a caller other
            # than a training step (each step runs in a process of its own; a test run's
            # process runs many): its thread pools cannot change any more.
            log.warning(
                "TensorFlow was initialised before training in this process: it keeps %d inter-op "
                "and %d intra-op threads instead of threads=%d.",
                tf.config.threading.get_inter_op_parallelism_threads(),
                tf.config.threading.get_intra_op_parallelism_threads(),
                threads,
            )
    # Python, NumPy and TensorFlow seeds, as the reference experiment sets them (Keras 3
    # draws its initialiser seeds from Python's generator).
    random.seed(seed)
    np.random.seed(seed)
    tf.random.set_seed(seed)
    tf.config.experimental.enable_op_determinism()
    return tf


LR_SCALING = "linear"
"""How the learning rate follows the replicas: ``linear`` (lr x replicas, as the global batch
grows by the same factor; Goyal et al. 2017). One replica: the knob's ``lr`` as it is."""


def scaled_lr(lr: float, replicas: int) -> float:
    """The learning rate for ``replicas`` replicas of ``lr``'s per-replica batch (:data:`LR_SCALING`)."""
    return lr * replicas


def distribution_of(strategy: str, replicas: int, params: TrainParams, workers: int = 1) -> dict[str, Any]:
    """What the model's metadata records of how training was spread over devices.

    ``params.batch_size`` is the batch of one replica; the global batch (one optimiser
    step) is ``batch_size x replicas`` and the learning rate is scaled by :func:`scaled_lr`.
    """
    return {
        "strategy": strategy,
        "replicas": replicas,
        "workers": workers,
        "per_replica_batch_size": params.batch_size,
        "global_batch_size": params.batch_size * replicas,
        "lr_scaling": LR_SCALING if replicas > 1 else "none",
        "lr": scaled_lr(params.lr, replicas),
    }


def gpu_replica_devices(physical: list[str]) -> list[str]:
    """TensorFlow's logical names (``/gpu:0``...) of physical GPUs (``/physical_device:GPU:0``...)."""
    return [f"/gpu:{name.rsplit(':', 1)[-1]}" for name in physical]


def choose_strategy(tf: Any, devices: list[str]) -> Any:
    """``MirroredStrategy`` over ``devices`` when there are several, else TensorFlow's default.

    One device keeps the default strategy, so one-replica training is exactly what it was
    (bit for bit, :func:`configure_tensorflow`).
    """
    if len(devices) > 1:
        return tf.distribute.MirroredStrategy(devices)
    return tf.distribute.get_strategy()


def learning_rate(tf: Any, lr: float, schedule: str, steps: int) -> Any:
    """The optimiser's learning rate: ``lr``, or a cosine decay from ``lr`` to zero in ``steps``.

    With a constant rate the last epoch ends wherever Adam's last steps left the weights,
    and on this data set the validation accuracy moves by up to five points between the
    last two epochs; decaying the rate to zero ends training in a flat, repeatable place.
    """
    if schedule == "constant":
        return lr
    return tf.keras.optimizers.schedules.CosineDecay(lr, decay_steps=max(1, steps), alpha=0.0)


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


def _datasets(
    tf: Any, prepared_dir: Path, manifest: dict, params: TrainParams, replicas: int = 1
) -> tuple[int, Any, int, Any]:
    """Training and validation ``tf.data`` pipelines over the shards, with their sizes.

    Each element is one global batch (``batch_size x replicas`` images), which a
    ``tf.distribute`` strategy splits between the replicas. The sample order is the same
    for any number of replicas.
    """
    global_batch = params.batch_size * replicas
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
        prepared_dir, "train", global_batch, order, augment=params.augment, seed=params.seed
    )
    n_val, val_gen = _batches(prepared_dir, "validation", global_batch)
    options = tf.data.Options()
    # Several workers (MultiWorkerMirroredStrategy) each read every batch and keep their
    # share of it: a generator has no files to shard by.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA

    def dataset(generate: Any, count: int) -> Any:
        batches = -(-count // global_batch)
        return (
            tf.data.Dataset.from_generator(generate, output_signature=signature)
            .apply(tf.data.experimental.assert_cardinality(batches))
            .prefetch(2)
            .with_options(options)
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
    # In chunks of GUARD_CHUNK images, so 64x the bundled data fits in memory; a split of
    # one chunk (the bundled data's) is handled exactly as a whole.
    rng = np.random.default_rng(seed)
    plain: list[np.ndarray] = []
    changed: list[np.ndarray] = []
    plain_stats: list[np.ndarray] = []
    changed_stats: list[np.ndarray] = []
    bank_labels: list[np.ndarray] = []
    for train_images, train_labels in iter_chunks(prepared_dir, "train"):
        plain.append(predict(train_images)[1])
        plain_stats.append(image_statistics(train_images))
        augmented = augment_batch(train_images, rng, PHOTOMETRIC)
        changed.append(predict(augmented)[1])
        changed_stats.append(image_statistics(augmented))
        bank_labels.append(train_labels)
    bank = np.concatenate(plain + changed)
    all_logits, all_embeddings, features, calibration, calibration_stats = [], [], [], [], []
    calibration_labels: list[np.ndarray] = []
    calibration_changed: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
    for chunk, (images, labels) in enumerate(iter_chunks(prepared_dir, "validation")):
        logits, embeddings = predict(images)
        all_logits.append(logits)
        all_embeddings.append(embeddings)
        features.append(image_features(images))
        right = np.argmax(logits, axis=-1) == labels
        calibration.append(embeddings[right])
        calibration_stats.append(image_statistics(images[right]))
        calibration_labels.append(labels[right])
        for name, variant in benign_changes(images, seed + chunk).items():
            changed_logits, changed_embeddings = predict(variant)
            right = np.argmax(changed_logits, axis=-1) == labels
            calibration_changed.setdefault(name, []).append(
                (changed_embeddings[right], image_statistics(variant[right]), labels[right])
            )
    for parts in calibration_changed.values():
        calibration.extend(embeddings for embeddings, _, _ in parts)
        calibration_stats.extend(stats for _, stats, _ in parts)
        calibration_labels.extend(right_labels for _, _, right_labels in parts)
    guard = Guard.fit(
        bank,
        np.concatenate(calibration),
        GuardParams(coverage=coverage),
        bank_labels=np.concatenate(bank_labels + bank_labels),
        bank_statistics=np.concatenate(plain_stats + changed_stats),
        calibration_statistics=np.concatenate(calibration_stats),
        calibration_labels=np.concatenate(calibration_labels),
    )
    classes = list(manifest["classes"])
    logits = np.concatenate(all_logits)
    predictions = [classes[int(index)] for index in np.argmax(logits, axis=-1)]
    return guard, build_reference(
        None, predictions, classes, np.concatenate(all_embeddings), features=np.concatenate(features)
    )


GUARD_CHUNK = 4096
"""Images per chunk when the guard and the reference read a split (bounded memory)."""


def iter_chunks(
    prepared_dir: Path, split: str, size: int = GUARD_CHUNK
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The split in chunks of ``size`` images (in memory), read from its memory-mapped shards."""
    images: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    held = 0
    for shard_images, shard_labels in iter_shards(prepared_dir, split):
        start = 0
        while start < len(shard_labels):
            take = min(size - held, len(shard_labels) - start)
            images.append(np.asarray(shard_images[start : start + take]))
            labels.append(np.asarray(shard_labels[start : start + take]))
            held += take
            start += take
            if held == size:
                yield np.concatenate(images), np.concatenate(labels)
                images, labels, held = [], [], 0
    if held:
        yield np.concatenate(images), np.concatenate(labels)


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
    """A callback printing ``progress: epoch n of N (train_loss ..., val_accuracy ...)`` after each epoch."""

    class EpochProgress(keras.callbacks.Callback):  # type: ignore[misc,name-defined]
        def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
            self.progress = Progress("epoch", epochs)
            self.started = time.monotonic()

        def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
            figures: dict[str, float | str] = {k: float(v) for k, v in training_names(logs or {}).items()}
            figures["elapsed"] = f"{time.monotonic() - self.started:.1f} s"
            self.progress.step(**figures)

    return EpochProgress()


def _build_for_multi_worker(model: Any, input_shape: tuple[int, ...]) -> None:
    """Build the model, its loss, metrics and optimiser before ``fit``, for several workers.

    Keras 3.15's ``fit`` builds them from the first batch, which under
    ``MultiWorkerMirroredStrategy`` it first averages with ``strategy.reduce`` on the
    per-replica values, and that fails (``Attempt to convert a value (PerReplica...)``).
    Built here from the batch's shape, the model skips that step. Its ``fit`` then also
    averages each step's logs across workers with ``strategy.reduce(..., axis=0)`` on
    scalars, which fails the same way, so that averaging is switched off: the logs are
    read from the metrics' variables, which the strategy already aggregates, and the
    gradients are still all-reduced over every replica of every worker (the two-worker test
    finds the same history and the same weights on both).
    """
    from keras.src.backend.tensorflow import trainer as keras_tf_trainer  # type: ignore[import-untyped]

    keras_tf_trainer._collective_all_reduce_multi_worker = lambda strategy: False
    model._symbolic_build(data_batch=(np.zeros((1, *input_shape), np.float32), np.zeros((1,), np.int32)))
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None


def _check_finite_history(history: Mapping[str, list[float]], params: TrainParams) -> None:
    for key, values in history.items():
        for epoch, value in enumerate(values):
            if not math.isfinite(value):
                raise _diverged(f"epoch {epoch + 1}", {key: value}, params)


def train_model(
    prepared_dir: Path, model_dir: Path, params: TrainParams, strategy: Any = None, workers: int = 1
) -> TrainResult:
    """Train on the ``train`` split, validate on ``validation``, write the model folder.

    One device (the CPU, or the one GPU given): no ``tf.distribute`` strategy, bit-for-bit
    repeatable. Several GPUs given to the container: ``MirroredStrategy`` over them, with
    ``params.batch_size`` per replica and the learning rate scaled (:func:`distribution_of`,
    recorded in the model's metadata).

    Args:
        prepared_dir: A folder written by ``prepare_dataset``.
        model_dir: Where the model folder goes (see the module docstring for its files).
        params: The training parameters.
        strategy: A ``tf.distribute`` strategy to train under (the tests' logical CPU
            devices, :mod:`planets_mlops.multiworker`'s ``MultiWorkerMirroredStrategy``);
            None: chosen from the GPUs given (:func:`choose_strategy`).
        workers: Workers of ``strategy`` (several: multi-worker training), for the metadata.

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
    gpus = check_gpus()
    if strategy is None:
        strategy = choose_strategy(tf, gpu_replica_devices(gpus))
    replicas = int(strategy.num_replicas_in_sync)
    name = type(strategy).__name__ if replicas > 1 or workers > 1 else "default"
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        name = "MultiWorkerMirroredStrategy"
    distribution = distribution_of(name, replicas, params, workers)
    n_train, train_ds, n_val, val_ds = _datasets(tf, prepared_dir, manifest, params, replicas)
    with strategy.scope():
        model = build_model(tuple(manifest["input_shape"]), len(classes), params.conv_size, params.dense_size)
        model.compile(
            optimizer=tf.keras.optimizers.Adam(
                learning_rate(
                    tf,
                    distribution["lr"],
                    params.lr_schedule,
                    params.epochs * -(-n_train // distribution["global_batch_size"]),
                )
            ),
            loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        if workers > 1:
            _build_for_multi_worker(model, tuple(manifest["input_shape"]))
    if replicas > 1:
        log.info(
            "Training %d replicas (%s): global batch %d, lr %g",
            replicas,
            name,
            distribution["global_batch_size"],
            distribution["lr"],
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
        distribution=distribution,
    )
    log.info(
        "Trained %d epochs on %d images in %.1f s: %s; guard keeps %.3f of its calibration images",
        params.epochs,
        n_train,
        duration,
        ", ".join(f"{k}={v:.4f}" for k, v in result.metrics().items()),
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
