"""Train/serve parity: the same bytes give the same tensor and the same prediction.

Training side: the tensors ``prepare_dataset`` stored in its shards (what the model was
trained and evaluated on). Serving side: the service's own input handling from raw file
bytes (:func:`planets_mlops.service.inference.images_to_batch`, which ``/predict`` runs),
and the served model over real HTTP against evaluate's ONNX Runtime predictions.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from planets_mlops.prepared import load_manifest, load_split
from planets_mlops.preprocess import PreprocessConfig
from planets_mlops.service.inference import images_to_batch


def split_files(prepared: Path, raw: Path, split: str) -> list[Path]:
    return [raw / name for name in load_manifest(prepared)["splits"][split]["files"]]


@pytest.mark.parametrize("split", ["train", "validation"])
def test_serving_input_handling_reproduces_the_training_shards_exactly(
    small_prepared: Path, small_raw: Path, split: str
) -> None:
    manifest = load_manifest(small_prepared)
    config = PreprocessConfig.from_dict(manifest["preprocess"])
    stored, _ = load_split(small_prepared, split)
    blobs = [path.read_bytes() for path in split_files(small_prepared, small_raw, split)]
    served = images_to_batch(blobs, config)
    assert served.dtype == stored.dtype == np.float32
    assert served.shape == stored.shape
    assert np.array_equal(served, stored)


def test_model_config_is_the_data_set_config(small_prepared: Path, tiny_model: Path) -> None:
    """The model's preprocess.json is the data set's, plus a record of training's augmentation."""
    model_config = json.loads((tiny_model / "preprocess.json").read_text())
    assert model_config.pop("training_augmentation")["set"] == "photometric"
    assert model_config == load_manifest(small_prepared)["preprocess"]


def test_guard_scores_the_training_images_it_banked_as_fully_known(
    small_prepared: Path, tiny_model: Path
) -> None:
    """The bank is the training split's embeddings as the exported ONNX model computes them."""
    from planets_mlops.guard import load_guard
    from planets_mlops.model_folder import predict_outputs

    images, _ = load_split(small_prepared, "train")
    guard = load_guard(tiny_model)
    _, embedding = predict_outputs(tiny_model, images)
    scores = guard.scores(embedding, images)
    nonzero = np.linalg.norm(embedding, axis=1) > 0
    np.testing.assert_allclose(scores[nonzero], 1.0, atol=1e-5)


def test_parity_holds_for_16_bit_and_palette_files(tmp_path: Path, small_raw: Path) -> None:
    """Training shards from 16-bit gray, 16-bit RGB and palette PNGs equal what serving computes,
    and a 16-bit copy (v * 257) of a photo gives the tensor of the photo itself."""
    from PIL import Image

    from planets_mlops.app.dev import hostile_images as hostile
    from planets_mlops.prepare import PrepareParams, prepare_dataset
    from planets_mlops.preprocess import decode_image, preprocess_image

    raw = tmp_path / "raw"
    originals = {}
    for class_dir in sorted(small_raw.iterdir()):
        (raw / class_dir.name).mkdir(parents=True)
        for number, path in enumerate(sorted(class_dir.iterdir())[:6]):
            gray = hostile.luma(path)
            rgb = decode_image(path.read_bytes(), grayscale=False)
            kind = number % 3
            if kind == 0:
                blob = hostile.png16(gray.astype(np.uint16) * 257)
            elif kind == 1:
                blob = hostile.png16(rgb.astype(np.uint16) * 257)
            else:
                blob = hostile.encode(Image.fromarray(rgb, "RGB").quantize(64), "PNG")
            target = raw / class_dir.name / f"{path.stem}-{kind}.png"
            target.write_bytes(blob)
            originals[target.name] = path
    prepared = tmp_path / "prepared"
    prepare_dataset(
        raw, prepared, PrepareParams(split=0.5, grayscale=True)
    )  # luma parity, 16-bit gray included
    config = PreprocessConfig.from_dict(load_manifest(prepared)["preprocess"])
    for split in ("train", "validation"):
        stored, _ = load_split(prepared, split)
        files = split_files(prepared, raw, split)
        assert np.array_equal(images_to_batch([p.read_bytes() for p in files], config), stored)
        for path, tensor in zip(files, stored):
            if not path.stem.endswith("-2"):  # 16 bits: exactly the original photo's tensor
                rgb_original = path.stem.endswith("-1")
                photo = originals[path.name].read_bytes()
                expected = (
                    preprocess_image(
                        hostile.encode(Image.fromarray(decode_image(photo, False)), "PNG"), config
                    )
                    if rgb_original
                    else preprocess_image(photo, config)
                )
                assert np.array_equal(tensor, expected), path.name


def test_coalesced_requests_get_the_answers_they_get_alone(
    small_prepared: Path, small_raw: Path, tiny_model: Path
) -> None:
    """The service's coalescer (requests of one turn of the event loop, one model call) changes no bit.

    Each request alone, then all of them ready together (one call), then in a /predict_batch
    of several: the same answers, ``known_score`` included, to the bit.
    """
    import asyncio

    from planets_mlops.model_folder import LoadedModel
    from planets_mlops.service.coalesce import Coalescer

    model = LoadedModel(tiny_model)
    assert model.guard is not None and model.guard.needs_images
    blobs = [path.read_bytes() for path in split_files(small_prepared, small_raw, "validation")]
    batches = [images_to_batch([blob], model.config) for blob in blobs]
    alone = [model.answer(batch, row_by_row=True)[0][0] for batch in batches]
    coalescer = Coalescer(lambda batch: model.answer(batch, row_by_row=True))

    async def together() -> list:
        return await asyncio.gather(*(coalescer.answer(batch) for batch in batches))

    coalesced = [results[0] for results, _ in asyncio.run(together())]
    assert coalescer.calls == 1 and coalescer.rows == len(blobs) > 8
    assert json.dumps(coalesced) == json.dumps(alone)
    in_batches = [
        a for i in range(0, len(blobs), 5) for a in model.answer(np.concatenate(batches[i : i + 5]), True)[0]
    ]
    assert json.dumps(in_batches) == json.dumps(alone)
