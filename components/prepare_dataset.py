"""KFP component: deterministic split and preprocessing."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Output

from planets_mlops.components.images import RUNTIME_IMAGE
from planets_mlops.knobs import PrepareParams, describe_knobs


@dsl.component(base_image=RUNTIME_IMAGE, install_kfp_package=False)
@describe_knobs(PrepareParams)
def prepare_dataset(
    raw: Input[Dataset],
    prepared: Output[Dataset],
    preview: Output[HTML],
    seed: int = 5241,
    split: float = 0.2,
    image_size: int = 32,
    grayscale: bool = False,
    rescale: float = 1.0 / 255.0,
    output_classes: int = 0,
    max_invalid_fraction: float = 0.01,
    base: Input[Dataset] = None,
):
    """Grayscale, resize, rescale and split ``raw`` into sharded train/validation sets.

    ``prepared`` holds ``manifest.json`` (classes, preprocessing, split files),
    ``train/`` and ``validation/`` ``.npy`` shards and ``preview.png``; ``preview`` shows
    the samples with their labels in the KFP UI. With ``base`` (the data set ``raw`` was
    grown from), the base files keep their split and only added files are split anew, so a
    model trained on ``base`` is compared with a new one on images neither trained on.

    Args:
        raw: The class-per-folder data set to prepare.
        base: The data set ``raw`` was grown from (optional): its files keep their split.

    Returns:
        prepared: manifest.json, train/ and validation/ .npy shards and preview.png.
        preview: Sample images with their labels, for the KFP UI.
    """
    from planets_mlops.components.task_exit import end_when_written

    end_when_written()  # once the outputs are written, the process ends without teardown
    from pathlib import Path

    from planets_mlops.prepare import PrepareParams
    from planets_mlops.prepare import prepare_dataset as prepare

    params = PrepareParams(
        seed=seed,
        split=split,
        image_size=image_size,
        grayscale=grayscale,
        rescale=rescale,
        output_classes=output_classes,
        max_invalid_fraction=max_invalid_fraction,
    )
    result = prepare(raw.path, prepared.path, params, base_dir=base.path if base else None)
    Path(preview.path).write_text(result.preview_html())
    prepared.metadata.update(result.metadata(source=raw.metadata))
