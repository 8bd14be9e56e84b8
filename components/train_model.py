"""KFP component: train the reference CNN (TensorFlow/Keras)."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Model, Output

from planets_mlops.components.images import TRAINING_GPU_IMAGE
from planets_mlops.knobs import TrainParams, describe_knobs


@dsl.component(base_image=TRAINING_GPU_IMAGE, install_kfp_package=False)
@describe_knobs(TrainParams)
def train_model(
    prepared: Input[Dataset],
    model: Output[Model],
    history: Output[Artifact],
    metrics: Output[Metrics],
    curves: Output[HTML],
    lr: float = 0.001,
    epochs: int = 10,
    conv_size: int = 64,
    dense_size: int = 128,
    batch_size: int = 32,
    seed: int = 5241,
    output_classes: int = 0,
    guard_coverage: float = 0.99,
    augment: str = "photometric",
    lr_schedule: str = "cosine",
):
    """Train on the train split, validate per epoch, save Keras + ONNX model folder and its guard.

    Args:
        prepared: The prepared data set (prepare_dataset).

    Returns:
        model: The model folder: Keras and ONNX models, classes, preprocessing, the open-set guard.
        history: Per-epoch loss and accuracy as JSON.
        metrics: Final training and validation loss and accuracy.
        curves: Learning curves (loss and accuracy per epoch) as HTML.
    """
    from planets_mlops.components.task_exit import end_when_written

    end_when_written()  # once the outputs are written, the process ends without teardown
    from pathlib import Path

    from planets_mlops.train import TrainParams
    from planets_mlops.train import train_model_in_child as train

    params = TrainParams(
        lr=lr,
        epochs=epochs,
        conv_size=conv_size,
        dense_size=dense_size,
        batch_size=batch_size,
        seed=seed,
        output_classes=output_classes,
        guard_coverage=guard_coverage,
        augment=augment,
        lr_schedule=lr_schedule,
    )
    result = train(prepared.path, model.path, params)
    Path(history.path).write_text(result.history_json())
    metrics.metadata.update(result.metrics())
    Path(curves.path).write_text(result.curves_html())
    model.metadata.update(result.metadata(source=prepared.metadata))
