"""The smoke test of a new endpoint: one real image to ``POST /predict``, the answer checked."""

from __future__ import annotations

import io
import json
import logging
import math
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

from planets_mlops.errors import DeployError

logger = logging.getLogger(__name__)


Predict = Callable[[str, bytes, float], dict[str, Any]]


def smoke_image(size: int = 128) -> bytes:
    """A small planet-like JPEG made in-process: an orange disc on black."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (size, size), (0, 0, 0))
    margin = size // 6
    ImageDraw.Draw(img).ellipse((margin, margin, size - margin, size - margin), fill=(200, 120, 60))
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def http_predict(base_url: str, image: bytes, timeout_s: float) -> dict[str, Any]:
    """POST ``image`` as multipart field ``image`` to ``{base_url}/predict``.

    Raises:
        DeployError: the endpoint is unreachable or answers non-2xx or non-JSON.
    """
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="smoke.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + image
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        base_url.rstrip("/") + "/predict",
        data=body,
        method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return dict(json.loads(response.read()))
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:300].decode(errors="replace")
        raise DeployError(f"POST {request.full_url} answered HTTP {exc.code}: {detail}") from exc
    except (urllib.error.URLError, TimeoutError, json.JSONDecodeError, ValueError) as exc:
        raise DeployError(f"POST {request.full_url} failed: {exc}") from exc


def check_prediction(answer: Any) -> str:
    """Validate the /predict answer shape; return the predicted (closest) class.

    A model with an open-set guard answers ``"prediction": null`` for an image it does not
    recognise; its ``closest_class`` is then the class checked.

    Raises:
        DeployError: not {"prediction": str, "probabilities": {class: float}} with every
            probability a finite number in [0, 1] and their sum ~1 (a diverged model
            answers NaN, which no sum comparison catches); when not recognised, a null
            prediction with a ``closest_class`` string.
    """
    if not isinstance(answer, dict):
        raise DeployError(f"smoke test: /predict answered {answer!r}, expected a 'prediction' string")
    predicted = answer.get("prediction")
    if predicted is None and answer.get("recognised") is False:
        predicted = answer.get("closest_class")
    if not isinstance(predicted, str):
        raise DeployError(f"smoke test: /predict answered {answer!r}, expected a 'prediction' string")
    probabilities = answer.get("probabilities")
    if not isinstance(probabilities, dict) or not probabilities:
        raise DeployError(f"smoke test: /predict answered no 'probabilities' map: {answer!r}")
    bad = {
        name: p
        for name, p in probabilities.items()
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not math.isfinite(p) or not 0 <= p <= 1
    }
    if bad:
        raise DeployError(
            f"smoke test: probabilities must be finite numbers in [0, 1]; got {bad!r} "
            "(a model with non-finite weights answers NaN: retrain with a lower train_lr)"
        )
    total = sum(float(p) for p in probabilities.values())
    if not abs(total - 1.0) <= 0.01 or predicted not in probabilities:
        raise DeployError(
            f"smoke test: probabilities sum to {total:.3f} or miss the predicted class "
            f"{predicted!r}: {answer!r}"
        )
    return predicted
