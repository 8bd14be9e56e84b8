"""KFP component: train the reference CNN (TensorFlow/Keras)."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Model, Output
from planets_mlops.components.images import TRAINING_GPU_IMAGE


@dsl.component(base_image=TRAINING_GPU_IMAGE, install_kfp_package=False)
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
):
    """Train on the train split, validate per epoch, save Keras + ONNX model folder."""
    import json
    from pathlib import Path

    from planets_mlops.evaluate import plot_history
    from planets_mlops.train import TrainParams
    from planets_mlops.train import train_model as train

    params = TrainParams(
        lr=lr,
        epochs=epochs,
        conv_size=conv_size,
        dense_size=dense_size,
        batch_size=batch_size,
        seed=seed,
        output_classes=output_classes,
    )
    summary = train(prepared.path, model.path, params)
    Path(history.path).write_text(json.dumps(summary["history"], indent=1))
    for key, value in summary["final"].items():
        metrics.log_metric(f"train_{key}" if not key.startswith("val_") else key, value)
    Path(curves.path).write_text(
        "<html><body><h1>Training curves</h1>"
        f"<img src='data:image/png;base64,{plot_history(summary['history'])}'/></body></html>"
    )
    model.metadata.update(
        {
            "framework": summary["framework"],
            "classes": summary["classes"],
            "parameters": summary["parameters"],
            "train_seconds": summary["train_seconds"],
            "data_commit": prepared.metadata.get("source_commit", ""),
            "data_dvc_hash": prepared.metadata.get("source_dvc_hash", ""),
            **{f"final_{k}": v for k, v in summary["final"].items()},
        }
    )
