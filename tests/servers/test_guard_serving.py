"""The served guard over real HTTP: known, benign-changed and unseen images.

A model of nine of the ten classes (all but Mars: one fold of the benchmark's leave one
class out) is trained for real with the default recipe (photometric augmentation,
class-wise guard) on their 150 images each, packaged by the real packaging logic and
served by the real ``bentoml serve`` on 127.0.0.1. Its answers are checked on images it
never trained on: the nine classes' ``extra/`` images (known), the same images as another
camera would take them (noise of sigma 25, blur of radius 2, half the contrast; sent as
PNG), and Mars (unseen). ``benchmarks/bench_guard.py`` measures the same shares for every
fold at three seeds, against the issue's targets; the bars here are a little lower, as
they hold for one seed on fewer images.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support.fixtures.data import PLANETS, copy_subset

UNSEEN = "Mars"
KNOWN = tuple(sorted(p.name for p in (PLANETS / "raw").iterdir() if p.is_dir() and p.name != UNSEEN))
BATCH = 8


def extra_of(classes: tuple[str, ...], per_class: int) -> list[tuple[Path, str]]:
    """``extra/`` files of ``classes`` with their true class (decoded from the file name)."""
    chosen: dict[str, list[Path]] = {name: [] for name in classes}
    for path in sorted((PLANETS / "extra").glob("*.jpg")):
        stem = path.stem[::-1]
        name = base64.urlsafe_b64decode(stem + "=" * (-len(stem) % 4)).decode().rsplit("_", 1)[0]
        if name in chosen and len(chosen[name]) < per_class:
            chosen[name].append(path)
    return [(path, name) for name in classes for path in chosen[name]]


@pytest.fixture(scope="module")
def guard_http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Path]]:
    """An HTTP client on the served nine-class model, and its model folder."""
    import httpx

    from planets_mlops.app.dev.serve_local import serve_bento
    from planets_mlops.knobs import PrepareParams, TrainParams
    from planets_mlops.package import package_model
    from planets_mlops.prepare import prepare_dataset
    from planets_mlops.train import train_model

    base = tmp_path_factory.mktemp("guard-serving")
    raw = copy_subset(base / "raw", KNOWN, per_class=150)
    prepare_dataset(raw, base / "prepared", PrepareParams())
    train_model(base / "prepared", base / "model", TrainParams())
    archive = base / "planets.bento"
    package_model(base / "model", archive, model_uri=(base / "model").as_uri())
    env = {"PLANETS_WORKERS": "1", "PLANETS_MAX_BATCH": str(BATCH)}
    with serve_bento(archive, env=env, ready_timeout=90) as server:
        with httpx.Client(base_url=server.url, timeout=60, trust_env=False) as client:
            yield client, base / "model"


def ask(client: Any, images: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
    """The service's answers for ``(file name, bytes)`` pairs, in batches."""
    answers: list[dict[str, Any]] = []
    for start in range(0, len(images), BATCH):
        files = [("image", item) for item in images[start : start + BATCH]]
        response = client.post("/predict_batch", files=files)
        assert response.status_code == 200, response.text
        answers.extend(response.json()["predictions"])
    return answers


def check_guard_fields(answer: dict[str, Any]) -> None:
    """A recognised answer names its class; an unrecognised one only its closest class."""
    assert answer["known_threshold"] == 0.5 and 0.0 <= answer["known_score"] <= 1.0
    assert answer["recognised"] is (answer["known_score"] >= 0.5)
    if answer["recognised"]:
        assert answer["prediction"] == answer["closest_class"]
    else:
        assert answer["prediction"] is None and answer["closest_class"] in KNOWN


def test_known_images_are_answered_and_kept(guard_http: tuple[Any, Path]) -> None:
    client, model = guard_http
    known = extra_of(KNOWN, 10)
    answers = ask(client, [(path.name, path.read_bytes()) for path, _ in known])
    for answer in answers:
        check_guard_fields(answer)
    right = np.array([a["closest_class"] == truth for a, (_, truth) in zip(answers, known)])
    kept = np.array([a["recognised"] for a in answers])
    assert right.mean() >= 0.9
    assert kept.mean() >= 0.9
    for name in KNOWN:  # no class is left behind
        assert kept[[truth == name for _, truth in known]].mean() >= 0.8, name
    # The served scores are the guard's, computed outside the service on the same files.
    from planets_mlops.guard import load_guard
    from planets_mlops.model_folder import predict_outputs
    from planets_mlops.preprocess import PreprocessConfig, preprocess_image

    config = PreprocessConfig.from_dict(json.loads((model / "preprocess.json").read_text()))
    tensors = np.stack([preprocess_image(p, config) for p, _ in known[:BATCH]])
    _, embedding = predict_outputs(model, tensors)
    np.testing.assert_allclose(
        [a["known_score"] for a in answers[:BATCH]], load_guard(model).scores(embedding, tensors), atol=1e-4
    )


@pytest.mark.parametrize("change, strength", [("noise", 25.0), ("blur", 2.0), ("contrast", 0.5)])
def test_benign_changes_of_known_images_are_kept_when_answered_right(
    guard_http: tuple[Any, Path], change: str, strength: float
) -> None:
    from planets_mlops.app.dev.imagechanges import change_pixels, png_bytes
    from planets_mlops.imaging import decode

    client, _ = guard_http
    known = extra_of(KNOWN, 6)
    images = [
        (
            f"{path.stem}.png",
            png_bytes(change_pixels(decode(path, grayscale=False), change, strength, seed=i)),
        )
        for i, (path, _) in enumerate(known)
    ]
    answers = ask(client, images)
    for answer in answers:
        check_guard_fields(answer)
    right = np.array([a["closest_class"] == truth for a, (_, truth) in zip(answers, known)])
    kept = np.array([a["recognised"] for a in answers])
    assert right.mean() >= 0.8, f"{change}: the model classifies only {right.mean():.2f} right"
    assert kept[right].mean() >= 0.85, (
        f"{change}: the guard keeps {kept[right].mean():.2f} of the right answers"
    )


def test_an_unseen_class_gets_no_prediction(guard_http: tuple[Any, Path]) -> None:
    client, _ = guard_http
    unseen = sorted((PLANETS / "raw" / UNSEEN).glob("*.jpg"))[:40] + [p for p, _ in extra_of((UNSEEN,), 20)]
    answers = ask(client, [(path.name, path.read_bytes()) for path in unseen])
    for answer in answers:
        check_guard_fields(answer)
    refused = np.array([a["prediction"] is None for a in answers])
    assert refused.mean() >= 0.9, f"the guard refuses only {refused.mean():.2f} of {UNSEEN}"
