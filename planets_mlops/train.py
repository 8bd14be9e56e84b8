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

import contextlib
import json
import logging
import math
import os
import random
import sys
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


KERAS_OPTIONAL_IMPORTS = ("sklearn", "matplotlib", "pandas", "scipy")
"""Packages Keras imports with TensorFlow when they are installed, each under ``try: ...
except ImportError`` (its scikit-learn wrappers, its image-gallery plots, pandas and SciPy
sparse inputs), and that fitting the model never uses: about 2 of the 4.5 CPU seconds of
``import tensorflow`` in this environment."""


@contextlib.contextmanager
def without_imports(names: tuple[str, ...] = KERAS_OPTIONAL_IMPORTS) -> Iterator[None]:
    """Within the block, importing a package of ``names`` that is not imported yet fails with ``ImportError``.

    After it, they import as usual again (a module that took the ``ImportError`` keeps its
    fallback). Around TensorFlow's import (:func:`configure_tensorflow`).
    """
    hidden = [name for name in names if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


def import_tensorflow() -> None:
    """TensorFlow's first import in a process, as :func:`configure_tensorflow` makes it.

    Starts no TensorFlow runtime: threads, seeds and determinism are still set by
    :func:`configure_tensorflow` when training starts (the warm child of a local run,
    :mod:`planets_mlops.warm_trainer`, imports this way while it waits for its job).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with without_imports(() if "tensorflow" in sys.modules else KERAS_OPTIONAL_IMPORTS):
        import tensorflow  # noqa: F401


def configure_tensorflow(seed: int, threads: int = 0) -> Any:
    """Import TensorFlow with seeds and deterministic ops; returns the module.

    The first import in a process leaves out the optional packages Keras would import with it
    and that training never uses (:data:`KERAS_OPTIONAL_IMPORTS`), unless already imported
    (:func:`import_tensorflow`).
    """
    import_tensorflow()
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

    def dataset(generate: Any, batches: int) -> Any:
        return (
            tf.data.Dataset.from_generator(generate, output_signature=signature)
            .apply(tf.data.experimental.assert_cardinality(batches))
            .prefetch(2)
            .with_options(options)
        )

    # The training batches of every epoch come from one generator that a thread of its own
    # runs ahead (epochs_ahead), and fit reads steps_per_epoch of them per epoch: the same
    # batches in the same order (the weights are the same to the bit), made while the
    # previous step computes. A generator made again for each epoch, on TensorFlow's one
    # inter-op thread, took 0.60-0.70 s an epoch against 0.52-0.59 (bundled data, suite recipe).
    steps = -(-n_train // global_batch)
    train = dataset(epochs_ahead(train_gen, params.epochs), steps * params.epochs)
    return n_train, train, n_val, dataset(val_gen, -(-n_val // global_batch))


def epochs_ahead(
    generate: Callable[[], Iterator[Any]], epochs: int, depth: int = 4
) -> Callable[[], Iterator[Any]]:
    """A generator function over ``epochs`` runs of ``generate()``, made by a thread ``depth`` ahead.

    The items and their order are those of calling ``generate()`` ``epochs`` times; the
    thread only computes them earlier (NumPy and TensorFlow release the GIL while they
    compute). An error in the thread is raised where its item would have come. The thread
    stops when the generator is closed or dropped before its end (``fit`` stopped early).
    """
    import queue
    import threading

    def run() -> Iterator[Any]:
        items: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
        stop = threading.Event()

        def put(kind: str, value: Any) -> bool:
            while not stop.is_set():
                try:
                    items.put((kind, value), timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def produce() -> None:
            try:
                for _ in range(epochs):
                    for item in generate():
                        if not put("item", item):
                            return
                put("end", None)
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
                put("error", exc)

        thread = threading.Thread(target=produce, name="training-batches", daemon=True)
        thread.start()
        try:
            while True:
                kind, value = items.get()
                if kind == "end":
                    return
                if kind == "error":
                    raise value
                yield value
        finally:
            stop.set()
            thread.join(timeout=1)  # it looks at stop every 0.1 s
            if thread.is_alive():
                log.warning("The thread making training batches did not stop in 1 s; it is left to end.")

    return run


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
    inputs: GuardInputs | None = None,
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

    ``inputs``: the same ``prepared_dir`` and ``seed``'s :class:`GuardInputs`, whose first
    chunks may have been computed already (while the model trained); None: made here.
    """
    manifest = load_manifest(prepared_dir)
    inputs = inputs if inputs is not None else GuardInputs(prepared_dir, seed)
    plain: list[np.ndarray] = []
    changed: list[np.ndarray] = []
    plain_stats: list[np.ndarray] = []
    changed_stats: list[np.ndarray] = []
    bank_labels: list[np.ndarray] = []
    for train_images, train_labels, train_stats, augmented, augmented_stats in inputs.train:
        plain.append(predict(train_images)[1])
        plain_stats.append(train_stats)
        changed.append(predict(augmented)[1])
        changed_stats.append(augmented_stats)
        bank_labels.append(train_labels)
    bank = np.concatenate(plain + changed)
    all_logits, all_embeddings, features, calibration, calibration_stats = [], [], [], [], []
    calibration_labels: list[np.ndarray] = []
    calibration_changed: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
    for images, labels, stats, image_feats, variants in inputs.validation:
        logits, embeddings = predict(images)
        all_logits.append(logits)
        all_embeddings.append(embeddings)
        features.append(image_feats)
        right = np.argmax(logits, axis=-1) == labels
        calibration.append(embeddings[right])
        calibration_stats.append(stats[right])
        calibration_labels.append(labels[right])
        for name, (variant, variant_stats) in variants.items():
            changed_logits, changed_embeddings = predict(variant)
            right = np.argmax(changed_logits, axis=-1) == labels
            calibration_changed.setdefault(name, []).append(
                (changed_embeddings[right], variant_stats[right], labels[right])
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


class _Ahead:
    """An iterator whose first item can be computed before anyone asks (:meth:`prime`)."""

    def __init__(self, items: Iterator[Any]) -> None:
        self._items = items
        self._first: list[Any] = []
        self._started = False

    def prime(self) -> None:
        """Compute the first item now (nothing when iteration has begun or there is none)."""
        if not self._started and not self._first:
            self._first = [item for item in [next(self._items, _END)] if item is not _END]

    def __iter__(self) -> Iterator[Any]:
        self._started = True
        yield from self._first
        self._first = []
        yield from self._items


_END = object()


class GuardInputs:
    """What :func:`fit_guard` computes from the images alone, whatever the model: one chunk at a time.

    ``train`` yields, per chunk of the train split, its images, labels, image statistics,
    the images under the random benign changes (drawn from one generator seeded with
    ``seed``, chunk after chunk) and their statistics; ``validation`` yields, per chunk of
    the validation split, its images, labels, statistics, monitoring features and each
    fixed benign change of them with its statistics. A statistic is computed per image, so
    a row taken from a chunk's is the same as that image's alone.

    :meth:`prime` computes the first chunk of each ahead (what training's parent process
    does while its child trains); only that chunk is held, so memory stays bounded by
    :data:`GUARD_CHUNK`.
    """

    def __init__(self, prepared_dir: Path, seed: int = 0) -> None:
        self.train = _Ahead(self._train(Path(prepared_dir), seed))
        self.validation = _Ahead(self._validation(Path(prepared_dir), seed))

    def prime(self) -> None:
        """Compute the first chunk of each split now."""
        self.train.prime()
        self.validation.prime()

    @staticmethod
    def _train(prepared_dir: Path, seed: int) -> Iterator[tuple[np.ndarray, ...]]:
        rng = np.random.default_rng(seed)
        for images, labels in iter_chunks(prepared_dir, "train"):
            augmented = augment_batch(images, rng, PHOTOMETRIC)
            yield images, labels, image_statistics(images), augmented, image_statistics(augmented)

    @staticmethod
    def _validation(prepared_dir: Path, seed: int) -> Iterator[tuple[Any, ...]]:
        for chunk, (images, labels) in enumerate(iter_chunks(prepared_dir, "validation")):
            variants = {
                name: (variant, image_statistics(variant))
                for name, variant in benign_changes(images, seed + chunk).items()
            }
            yield images, labels, image_statistics(images), image_features(images), variants


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
    from planets_mlops.cnn_onnx import cnn_spec

    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    model.save(model_dir / KERAS_FILE)
    spec = cnn_spec(model)
    if spec is None:
        export_onnx(
            with_embedding(model), model_dir / ONNX_FILE, output_names=(LOGITS_OUTPUT, EMBEDDING_OUTPUT)
        )
    return _finish_model_dir(model_dir, spec, manifest, history, prepared_dir, params)


def _finish_model_dir(
    model_dir: Path,
    spec: dict[str, np.ndarray] | None,
    manifest: dict,
    history: dict,
    prepared_dir: Path,
    params: TrainParams,
    inputs: GuardInputs | None = None,
) -> Guard:
    """The model folder after the Keras model: ONNX (from ``spec``; None: already written), guard, reference.

    Needs no TensorFlow: the ONNX model is written from the weights (:mod:`planets_mlops.cnn_onnx`)
    and the guard is fitted on what ONNX Runtime answers, through one session.
    """
    from planets_mlops.cnn_onnx import write_cnn_onnx
    from planets_mlops.model_folder import load_session, run_outputs

    if spec is not None:
        write_cnn_onnx(spec, model_dir / ONNX_FILE, (LOGITS_OUTPUT, EMBEDDING_OUTPUT))
    session = load_session(model_dir)
    guard, reference = fit_guard(
        lambda images: run_outputs(session, images), prepared_dir, params.guard_coverage, params.seed, inputs
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
    fitted = _fit(prepared_dir, params, strategy, workers)
    guard = _write_model_dir(fitted.model, model_dir, fitted.manifest, fitted.history, prepared_dir, params)
    return _trained(fitted.result(params), guard)


def train_model_in_child(prepared_dir: Path, model_dir: Path, params: TrainParams) -> TrainResult:
    """:func:`train_model` with TensorFlow in a child process, and the rest in this one.

    The child (``python -m planets_mlops.train``, :func:`child_main`) fits the model and writes the Keras
    model and its weights; it imports no KFP and ends without TensorFlow's slow teardown.
    Meanwhile this process computes what the guard needs from the images alone
    (:class:`GuardInputs`); then it writes the ONNX model from the weights
    (:mod:`planets_mlops.cnn_onnx`) and fits the guard and the monitoring reference, never
    importing TensorFlow. The model folder and the result are those :func:`train_model`
    gives in one process, to the bit (tests/component/test_train_evaluate.py); the
    largest process holds TensorFlow and the training alone (``benchmarks/bench_pipeline``
    measures the peak), and the training task's time no longer includes the guard's image
    work or TensorFlow's exit.

    Raises:
        The :mod:`planets_mlops.errors` error the child raised (``DataError``,
        ``AcceleratorError``, ``TrainingDivergedError``...), with its message; a child that
        failed otherwise: ``RuntimeError`` (its traceback is in the log above it).
    """
    import dataclasses
    import tempfile

    from planets_mlops import errors
    from planets_mlops.cnn_onnx import SPEC_FILE, load_spec
    from planets_mlops.warm_trainer import start_training

    manifest = load_manifest(prepared_dir)
    _check_classes(manifest, params)
    model_dir = Path(model_dir)
    with tempfile.TemporaryDirectory(prefix="train-child-") as scratch:
        result_file = Path(scratch) / "result.json"
        # A new child, or the one a local run started before this task (TensorFlow imported).
        child = start_training(
            [str(prepared_dir), str(model_dir), json.dumps(dataclasses.asdict(params)), str(result_file)]
        )
        try:
            inputs = GuardInputs(prepared_dir, params.seed)
            inputs.prime()
            _import_what_follows()
        finally:
            code = child.wait()
        answer = json.loads(result_file.read_text()) if result_file.is_file() else {}
    if "error" in answer:
        kind = getattr(errors, answer["error"], None)
        error = (
            kind.__new__(kind) if isinstance(kind, type) and issubclass(kind, errors.PlanetsError) else None
        )
        if error is None:
            raise RuntimeError(f"{answer['error']}: {answer['message']}")
        Exception.__init__(error, answer["message"])
        raise error
    if code or "history" not in answer:
        raise RuntimeError(f"The training process failed (exit status {code}); its log is above.")
    spec_file = model_dir / SPEC_FILE
    spec = load_spec(spec_file) if spec_file.is_file() else None
    guard = _finish_model_dir(model_dir, spec, manifest, answer["history"], prepared_dir, params, inputs)
    spec_file.unlink(missing_ok=True)
    result = TrainResult(
        params=params,
        classes=manifest["classes"],
        train_images=answer["train_images"],
        validation_images=answer["validation_images"],
        history=answer["history"],
        train_seconds=answer["train_seconds"],
        parameters=answer["parameters"],
        framework=answer["framework"],
        distribution=answer["distribution"],
    )
    return _trained(result, guard)


def save_keras_through_disk(model: Any, path: Path) -> None:
    """``model.save(path)``, the weights written through a temporary file instead of memory.

    Keras 3 builds the ``.keras`` file's weights in memory when it thinks memory is
    plentiful; through a file beside ``path`` the same archive costs the training process
    about 15 MB less at its peak (Keras' own path for large models, chosen here for every
    model). A Keras without that choice saves as usual.
    """
    try:
        from keras.src.saving import saving_lib  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - another Keras layout
        saving_lib = None
    chooser = getattr(saving_lib, "is_memory_sufficient", None)
    if chooser is None:
        model.save(path)
        return
    saving_lib.is_memory_sufficient = lambda model: False
    try:
        model.save(path)
    finally:
        saving_lib.is_memory_sufficient = chooser


def _import_what_follows() -> None:
    """Import what this process needs once the child has trained, while it trains.

    ONNX and ONNX Runtime (the export and the guard's predictions) and Matplotlib's pyplot
    (the training task draws its curves next): about 0.7 CPU s that would otherwise come
    after the child, on the second core instead.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401
    import onnx  # noqa: F401
    import onnxruntime  # noqa: F401


def fit_in_child(prepared_dir: Path, model_dir: Path, params: TrainParams, result_file: Path) -> None:
    """The child's part of :func:`train_model_in_child`: fit, write the Keras model and the weights.

    Writes ``result_file`` (JSON): the history, sizes, duration, parameter count, framework
    and distribution, or ``error`` and ``message`` for a :class:`planets_mlops.errors.PlanetsError`
    (which is raised again after). A layout :mod:`planets_mlops.cnn_onnx` does not know is
    exported to ONNX here, by Keras.
    """
    from planets_mlops.cnn_onnx import SPEC_FILE, cnn_spec, save_spec
    from planets_mlops.errors import PlanetsError

    try:
        fitted = _fit(prepared_dir, params)
        model_dir = Path(model_dir)
        model_dir.mkdir(parents=True, exist_ok=True)
        save_keras_through_disk(fitted.model, model_dir / KERAS_FILE)
        spec = cnn_spec(fitted.model)
        if spec is None:
            export_onnx(
                with_embedding(fitted.model),
                model_dir / ONNX_FILE,
                output_names=(LOGITS_OUTPUT, EMBEDDING_OUTPUT),
            )
        else:
            save_spec(spec, model_dir / SPEC_FILE)
        result = fitted.result(params)
        answer: dict[str, Any] = {
            "history": result.history,
            "train_images": result.train_images,
            "validation_images": result.validation_images,
            "train_seconds": result.train_seconds,
            "parameters": result.parameters,
            "framework": result.framework,
            "distribution": result.distribution,
        }
    except PlanetsError as exc:
        Path(result_file).write_text(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
        raise
    Path(result_file).write_text(json.dumps(answer))


@dataclass
class _Fitted:
    """A model that training has fitted, with what :class:`TrainResult` says of it."""

    model: Any
    manifest: dict
    history: dict[str, list[float]]
    train_images: int
    validation_images: int
    seconds: float
    framework: str
    distribution: dict[str, Any]

    def result(self, params: TrainParams) -> TrainResult:
        return TrainResult(
            params=params,
            classes=self.manifest["classes"],
            train_images=self.train_images,
            validation_images=self.validation_images,
            history=self.history,
            train_seconds=round(self.seconds, 2),
            parameters=int(self.model.count_params()),
            framework=self.framework,
            distribution=self.distribution,
        )


def _trained(result: TrainResult, guard: Guard) -> TrainResult:
    log.info(
        "Trained %d epochs on %d images in %.1f s: %s; guard keeps %.3f of its calibration images",
        result.params.epochs,
        result.train_images,
        result.train_seconds,
        ", ".join(f"{k}={v:.4f}" for k, v in result.metrics().items()),
        guard.calibration["kept"],
    )
    return result


def _check_classes(manifest: dict, params: TrainParams) -> None:
    classes = manifest["classes"]
    if params.output_classes and params.output_classes != len(classes):
        raise DataError(
            f"output_classes={params.output_classes} but the prepared data has {len(classes)} "
            f"classes {classes}. Set output_classes to {len(classes)} or 0 (take it from the data)."
        )


def _fit(prepared_dir: Path, params: TrainParams, strategy: Any = None, workers: int = 1) -> _Fitted:
    """TensorFlow's part of :func:`train_model`: the model fitted, nothing written."""
    manifest = load_manifest(prepared_dir)
    classes = manifest["classes"]
    _check_classes(manifest, params)
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
    steps = -(-n_train // distribution["global_batch_size"])
    with strategy.scope():
        model = build_model(tuple(manifest["input_shape"]), len(classes), params.conv_size, params.dense_size)
        model.compile(
            optimizer=tf.keras.optimizers.Adam(
                learning_rate(
                    tf,
                    distribution["lr"],
                    params.lr_schedule,
                    params.epochs * steps,
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
        steps_per_epoch=steps,
        validation_data=val_ds,
        shuffle=False,
        verbose=0,  # one progress line per epoch instead (planets_mlops.progress)
        callbacks=[_stop_on_non_finite_loss(tf.keras, params), _epoch_progress(tf.keras, params.epochs)],
    )
    history = {key: [float(v) for v in values] for key, values in fit.history.items()}
    _check_finite_history(history, params)
    duration = time.monotonic() - started
    return _Fitted(
        model=model,
        manifest=manifest,
        history=history,
        train_images=n_train,
        validation_images=n_val,
        seconds=duration,
        framework=f"tensorflow {tf.__version__}",
        distribution=distribution,
    )


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


def child_main(argv: list[str]) -> int:
    """``python -m planets_mlops.train PREPARED_DIR MODEL_DIR PARAMS_JSON RESULT_FILE``: :func:`fit_in_child`.

    The child process of :func:`train_model_in_child`. It imports no KFP, so the process that
    holds TensorFlow holds nothing else; its exit status is 0 once every output is written.
    """
    prepared_dir, model_dir, params_json, result_file = argv
    fit_in_child(
        Path(prepared_dir), Path(model_dir), TrainParams(**json.loads(params_json)), Path(result_file)
    )
    return 0


if __name__ == "__main__":
    logging.basicConfig(
        stream=sys.stdout, level=logging.INFO, format="[train %(asctime)s %(levelname)s]: %(message)s"
    )
    from planets_mlops.quick_exit import end_now

    if sys.argv[1:2] in (["--warm"], ["--warm-at"]):  # a local run's warm child: planets_mlops.warm_trainer
        from planets_mlops.warm_trainer import serve_main

        end_now(serve_main(sys.argv[1:], prepare=import_tensorflow, run=child_main))
    end_now(child_main(sys.argv[1:]))
