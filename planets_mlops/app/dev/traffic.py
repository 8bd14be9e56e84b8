"""Production-like traffic from real images, for the drift benchmark, the tests and the quickstart.

What the service does to an image, without the HTTP: :func:`model_records` preprocesses
the image bytes (:func:`planets_mlops.preprocess.preprocess_image`), runs the model folder's
ONNX export (logits and the guard's embedding), answers as the service answers
(:func:`planets_mlops.model_folder.answers`) and makes the records
(:func:`planets_mlops.monitoring.records.make_records`). :func:`model_reference` profiles
images the same way (:func:`planets_mlops.monitoring.reference.build_reference`).

Shifts (:data:`SHIFTS`), applied to the image bytes before the service sees them:

- ``darken``: brightness scaled by 0.5 (an under-exposed camera);
- ``rotate``: turned by 90 degrees (a camera mounted sideways);
- ``swap_rb``: red and blue channels swapped (a new camera whose driver delivers BGR, an
  everyday colour-balance change that no training augmentation covers: the production
  change of the quickstart's loop, :mod:`planets_mlops.app.production_loop`);
- ``zoom``: the centre 80 of 128 pixels scaled back to the full size (a longer focal length);
- a class mix is a choice of images, not a transform: :func:`extra_images` picks the
  bundled ``extra`` images of some classes only.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from planets_mlops.errors import InvalidParameterError
from planets_mlops.model_folder import LoadedModel
from planets_mlops.monitoring.records import (
    PredictionRecord,
    batch_name,
    encode_batch,
    make_records,
    partition,
)
from planets_mlops.monitoring.reference import ReferenceProfile, build_reference

SHIFTS = ("none", "darken", "rotate", "swap_rb", "zoom")
DARKEN_FACTOR = 0.5
ROTATE_DEGREES = 90
# The share of the side ``zoom`` keeps: 80 of 128 pixels.
ZOOM_KEEP = 80 / 128


def shift_image(data: bytes, shift: str) -> bytes:
    """The image ``data`` (any format Pillow reads) shifted, as JPEG bytes (``none``: unchanged).

    Raises:
        InvalidParameterError: ``shift`` is not one of :data:`SHIFTS`.
    """
    if shift not in SHIFTS:
        raise InvalidParameterError("shift", shift, f"one of {', '.join(SHIFTS)}")
    if shift == "none":
        return data
    from PIL import Image, ImageEnhance

    with Image.open(io.BytesIO(data)) as opened:
        image = opened.convert("RGB")
    if shift == "darken":
        image = ImageEnhance.Brightness(image).enhance(DARKEN_FACTOR)
    elif shift == "rotate":
        image = image.rotate(ROTATE_DEGREES)
    elif shift == "swap_rb":
        red, green, blue = image.split()
        image = Image.merge("RGB", (blue, green, red))
    else:
        width, height = image.size
        left, top = round(width * (1 - ZOOM_KEEP) / 2), round(height * (1 - ZOOM_KEEP) / 2)
        box = (left, top, left + round(width * ZOOM_KEEP), top + round(height * ZOOM_KEEP))
        image = image.crop(box).resize((width, height), Image.Resampling.BILINEAR)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=95)
    return out.getvalue()


def extra_class(path: Path) -> str:
    """The true class of a bundled ``extra`` image, from its opaque name (tests and benchmarks only).

    The stem reversed is the URL-safe base64 of ``<Class>_<N>``.
    """
    stem = path.stem[::-1]
    decoded = base64.urlsafe_b64decode(stem + "=" * (-len(stem) % 4)).decode()
    return decoded.rsplit("_", 1)[0]


def extra_images(folder: Path, classes: Sequence[str] | None = None) -> list[Path]:
    """The ``extra`` images of ``classes`` (all when None), sorted by name."""
    wanted = set(classes) if classes is not None else None
    return [p for p in sorted(Path(folder).glob("*.jpg")) if wanted is None or extra_class(p) in wanted]


class ModelRunner(LoadedModel):
    """A model folder run the way the service runs it: preprocessing, ONNX Runtime, guard."""

    def __init__(self, model_dir: Path) -> None:
        """Load the model folder, with its embeddings for the records' projections."""
        super().__init__(model_dir, embeddings=True)

    def run(self, tensors: np.ndarray) -> tuple[list[dict[str, Any]], np.ndarray | None]:
        """The service's answers and the embeddings of a model-input batch."""
        return self.answer(tensors)


def model_records(
    runner: ModelRunner, images: Sequence[bytes], model_version: str, when: datetime | None = None
) -> list[PredictionRecord]:
    """The prediction records the service would write for ``images``."""
    tensors = runner.tensors(images)
    answered, embeddings = runner.run(tensors)
    return make_records(tensors, answered, model_version, embeddings, when)


def model_reference(runner: ModelRunner, images: Sequence[bytes]) -> ReferenceProfile:
    """A reference profile of ``images`` (validation images) and the model's answers on them."""
    tensors = runner.tensors(images)
    answered, embeddings = runner.run(tensors)
    return build_reference(tensors, [a["closest_class"] for a in answered], runner.classes, embeddings)


def write_records(root: str, records: Sequence[PredictionRecord], client: Any = None) -> list[str]:
    """Write records into the store at ``root`` as the service does, one batch per model version and hour.

    Returns:
        The written object names.
    """
    from planets_mlops.inbox.storage import open_store
    from planets_mlops.monitoring.records import parse_time

    batches: dict[str, list[PredictionRecord]] = {}
    for record in records:
        where = partition(root, record.model_version, parse_time(record.time))
        batches.setdefault(where, []).append(record)
    names = []
    for where, batch in batches.items():
        name = batch_name(parse_time(batch[0].time))
        open_store(where, client).put_if_absent(name, encode_batch(batch))
        names.append(f"{where}/{name}")
    return names


def now() -> datetime:
    """The current time, UTC."""
    return datetime.now(UTC)
