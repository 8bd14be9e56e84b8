"""Train/serve parity: the same bytes give the same tensor and the same prediction.

The servers-tier tests of test_parity (the rest: tests/component/test_parity.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from planets_mlops.model_folder import answers
from planets_mlops.prepared import load_split
from tests.component.test_parity import split_files


def test_served_predictions_equal_evaluate_predictions_on_validation(
    http: Any, small_prepared: Path, small_raw: Path, tiny_model: Path
) -> None:
    from planets_mlops.guard import load_guard
    from planets_mlops.model_folder import predict_outputs

    images, _ = load_split(small_prepared, "validation")
    classes = json.loads((tiny_model / "classes.json").read_text())
    guard = load_guard(tiny_model)
    logits, embedding = predict_outputs(tiny_model, images)
    expected = answers(logits, classes, guard.scores(embedding, images), guard.threshold)
    paths = split_files(small_prepared, small_raw, "validation")
    served = [http.post("/predict", files={"image": (p.name, p.read_bytes())}).json() for p in paths]
    assert [s["prediction"] for s in served] == [e["prediction"] for e in expected]
    assert [s["closest_class"] for s in served] == [e["closest_class"] for e in expected]
    assert [s["recognised"] for s in served] == [e["recognised"] for e in expected]
    for one, other in zip(served, expected):
        np.testing.assert_allclose(
            list(one["probabilities"].values()), list(other["probabilities"].values()), rtol=0, atol=1e-6
        )
        # The guard's score: served (ONNX Runtime in the bento) against evaluate's. The score
        # is a cosine distance in units of a small class threshold distance, so the float32
        # rounding of a batch against single images (1e-7) may show some ten times larger.
        assert one["known_score"] == pytest.approx(other["known_score"], abs=1e-5)
        assert one["known_threshold"] == guard.threshold
    batch = http.post("/predict_batch", files=[("image", (p.name, p.read_bytes())) for p in paths[:8]])
    assert [b["prediction"] for b in batch.json()["predictions"]] == [e["prediction"] for e in expected[:8]]
    assert [b["known_score"] for b in batch.json()["predictions"]] == pytest.approx(
        [e["known_score"] for e in expected[:8]], abs=1e-5
    )
