"""The served bento over real HTTP: answers, metadata, and every malformed request.

``bento_server`` (tests/fixtures/serving.py) runs the real ``bentoml serve`` of a bento
built from a tiny trained model, with one worker, a 1 MB upload limit and batches of 8.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from planets_mlops.preprocess import PreprocessConfig, preprocess_image
from tests.fixtures.data import PLANETS
from tests.fixtures.serving import TEST_MAX_BATCH, TEST_MAX_UPLOAD_BYTES, TEST_METRICS, TEST_REVISION

EXTRA = sorted((PLANETS / "extra").glob("*.jpg"))


def encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def synthetic(mode: str, size: tuple[int, int]) -> Image.Image:
    """A deterministic gradient image in ``mode`` (smooth, so large sizes stay small files)."""
    ys, xs = np.mgrid[0 : size[1], 0 : size[0]]
    rgb = np.stack(
        [
            xs * 255 // max(size[0], 1),
            ys * 255 // max(size[1], 1),
            (xs + ys) * 255 // max(size[0] + size[1], 1),
        ],
        axis=-1,
    ).astype(np.uint8)
    return Image.fromarray(rgb, "RGB").convert(mode)


def onnx_answer(model_dir: Path, blob: bytes) -> tuple[str, np.ndarray]:
    """Prediction and probabilities from ONNX Runtime on the model folder itself."""
    from planets_mlops.evaluate import predict_logits, softmax

    config = PreprocessConfig.from_dict(json.loads((model_dir / "preprocess.json").read_text()))
    classes = json.loads((model_dir / "classes.json").read_text())
    logits = predict_logits(model_dir, preprocess_image(blob, config)[None])
    return classes[int(np.argmax(logits[0]))], softmax(logits.astype(np.float64))[0]


def assert_answer(body: dict[str, Any], classes: list[str]) -> None:
    assert set(body) == {"prediction", "closest_class", "probabilities"}
    assert list(body["probabilities"]) == classes
    probabilities = np.array(list(body["probabilities"].values()))
    assert probabilities.sum() == pytest.approx(1.0, abs=1e-9)
    assert body["prediction"] == body["closest_class"] == classes[int(np.argmax(probabilities))]


def assert_refused(response: Any, status: int, words: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert words.lower() in body["error"].lower(), body
    assert body["status"] == status


@pytest.mark.parametrize("path", EXTRA[:5], ids=lambda p: p.name)
def test_predict_matches_onnx_on_the_model_folder(
    http: Any, packaged_bento: dict[str, Any], path: Path
) -> None:
    blob = path.read_bytes()
    response = http.post("/predict", files={"image": (path.name, blob, "image/jpeg")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert_answer(body, packaged_bento["classes"])
    prediction, probabilities = onnx_answer(packaged_bento["model_dir"], blob)
    assert body["prediction"] == prediction
    np.testing.assert_allclose(list(body["probabilities"].values()), probabilities, atol=1e-6)


@pytest.mark.parametrize(
    ("mode", "fmt", "size"),
    [
        ("RGB", "PNG", (300, 200)),
        ("RGBA", "PNG", (64, 64)),
        ("L", "JPEG", (128, 128)),
        ("P", "PNG", (50, 90)),
        ("CMYK", "JPEG", (40, 40)),
        ("LA", "PNG", (33, 17)),
        ("RGB", "JPEG", (1, 1)),
        ("I;16", "PNG", (20, 20)),
        ("RGB", "JPEG", (2000, 1500)),
    ],
)
def test_predict_accepts_any_size_and_colour_mode(
    http: Any, packaged_bento: dict[str, Any], mode: str, fmt: str, size: tuple[int, int]
) -> None:
    blob = encode(synthetic(mode, size), fmt)
    response = http.post("/predict", files={"image": (f"x.{fmt.lower()}", blob)})
    assert response.status_code == 200, response.text
    assert_answer(response.json(), packaged_bento["classes"])
    assert response.json()["prediction"] == onnx_answer(packaged_bento["model_dir"], blob)[0]


def test_predict_accepts_a_raw_image_body(http: Any, packaged_bento: dict[str, Any]) -> None:
    blob = EXTRA[0].read_bytes()
    raw = http.post("/predict", content=blob, headers={"Content-Type": "image/jpeg"})
    form = http.post("/predict", files={"image": ("a.jpg", blob)})
    assert raw.status_code == 200, raw.text
    assert raw.json() == form.json()


def test_predict_batch_equals_one_by_one(http: Any, packaged_bento: dict[str, Any]) -> None:
    paths = EXTRA[:TEST_MAX_BATCH]
    response = http.post("/predict_batch", files=[("image", (p.name, p.read_bytes())) for p in paths])
    assert response.status_code == 200, response.text
    batch = response.json()["predictions"]
    single = [http.post("/predict", files={"image": (p.name, p.read_bytes())}).json() for p in paths]
    assert [b["prediction"] for b in batch] == [s["prediction"] for s in single]
    for one, other in zip(batch, single):
        np.testing.assert_allclose(
            list(one["probabilities"].values()), list(other["probabilities"].values()), atol=1e-6
        )


def test_metadata_describes_model_data_and_metrics(http: Any, packaged_bento: dict[str, Any]) -> None:
    response = http.get("/metadata")
    assert response.status_code == 200
    body = response.json()
    assert body["model_tag"] == packaged_bento["model_tag"]
    assert body["data_revision"] == TEST_REVISION
    assert body["model_uri"] == packaged_bento["model_dir"].as_uri()
    assert body["classes"] == packaged_bento["classes"]
    assert body["metrics"] == TEST_METRICS
    assert body["preprocess"] == json.loads((packaged_bento["model_dir"] / "preprocess.json").read_text())


@pytest.mark.parametrize("route", ["/livez", "/readyz"])
def test_probes_answer(http: Any, route: str) -> None:
    assert http.get(route).status_code == 200


def _jpeg() -> bytes:
    return EXTRA[0].read_bytes()


def _bomb() -> bytes:
    """A PNG whose header claims 20000 x 20000 pixels (400 MP): Pillow's decompression-bomb
    guard must refuse it before allocating anything."""
    import struct
    import zlib

    png = encode(Image.new("L", (1, 1)), "PNG")
    ihdr = b"IHDR" + struct.pack(">II", 20000, 20000) + png[24:29]
    return png[:12] + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + png[33:]


def _chunks(total: int, size: int = 64 * 1024):
    boundary = b'--xyz\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n\r\n'
    yield boundary
    for _ in range(total // size + 1):
        yield b"\xff" * size


MALFORMED = {
    "not an image": (
        lambda h: h.post("/predict", files={"image": ("a.jpg", b"hello, not a picture")}),
        400,
        "cannot decode",
    ),
    "truncated jpeg": (
        lambda h: h.post("/predict", files={"image": ("a.jpg", _jpeg()[:300])}),
        400,
        "cannot decode",
    ),
    "empty file": (lambda h: h.post("/predict", files={"image": ("a.jpg", b"")}), 400, "empty"),
    "empty body": (
        lambda h: h.post("/predict", content=b"", headers={"Content-Type": "image/jpeg"}),
        400,
        "empty",
    ),
    "no content type": (lambda h: h.post("/predict", content=b""), 415, "content-type"),
    "json body": (lambda h: h.post("/predict", json={"image": "abc"}), 415, "content-type"),
    "wrong field name": (
        lambda h: h.post("/predict", files={"file": ("a.jpg", _jpeg())}),
        400,
        "no field 'image'",
    ),
    "text field": (
        lambda h: h.post("/predict", data={"image": "abc"}, files={"x": ("x.txt", b"1")}),
        400,
        "not a file",
    ),
    "urlencoded form": (lambda h: h.post("/predict", data={"image": "abc"}), 415, "content-type"),
    "broken multipart": (
        lambda h: h.post("/predict", content=b"garbage", headers={"Content-Type": "multipart/form-data"}),
        400,
        "multipart",
    ),
    "oversized": (
        lambda h: h.post("/predict", files={"image": ("a.jpg", b"\xff" * (TEST_MAX_UPLOAD_BYTES + 1))}),
        413,
        "too large",
    ),
    "oversized chunked": (
        lambda h: h.post(
            "/predict",
            content=_chunks(TEST_MAX_UPLOAD_BYTES + 1),
            headers={"Content-Type": "multipart/form-data; boundary=xyz"},
        ),
        413,
        "too large",
    ),
    "two images to predict": (
        lambda h: h.post("/predict", files=[("image", ("a.jpg", _jpeg())), ("image", ("b.jpg", _jpeg()))]),
        400,
        "predict_batch",
    ),
    "batch too big": (
        lambda h: h.post("/predict_batch", files=[("image", ("a.jpg", b"x"))] * (TEST_MAX_BATCH + 1)),
        400,
        "too many images",
    ),
    "decompression bomb": (
        lambda h: h.post("/predict", files={"image": ("big.png", _bomb())}),
        400,
        "cannot decode",
    ),
    "bad image in batch": (
        lambda h: h.post(
            "/predict_batch", files=[("image", ("a.jpg", _jpeg())), ("image", ("b.jpg", b"junk"))]
        ),
        400,
        "image 1 of 2",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_requests_get_a_4xx_with_a_message_and_the_worker_survives(
    http: Any, packaged_bento: dict[str, Any], case: str
) -> None:
    send, status, words = MALFORMED[case]
    assert_refused(send(http), status, words)
    after = http.post("/predict", files={"image": ("a.jpg", _jpeg())})
    assert after.status_code == 200
    assert_answer(after.json(), packaged_bento["classes"])


def test_openapi_document_is_served(http: Any) -> None:
    response = http.get("/docs.json")
    assert response.status_code == 200
    assert {"/predict", "/predict_batch"} <= set(response.json()["paths"])


def test_deploy_smoke_request_is_understood(bento_server: Any, packaged_bento: dict[str, Any]) -> None:
    from planets_mlops.deploy.apply import http_predict

    answer = http_predict(bento_server.url, EXTRA[0].read_bytes(), timeout_s=10)
    assert_answer(answer, packaged_bento["classes"])


def test_serve_and_classify_starts_classifies_and_stops(packaged_bento: dict[str, Any]) -> None:
    import os
    import socket

    from planets_mlops.net import free_port
    from planets_mlops.serve_local import process_tree, serve_and_classify

    def servers() -> set[int]:
        return {
            pid
            for pid in process_tree(os.getpid())
            if pid != os.getpid() and "bentoml" in Path(f"/proc/{pid}/cmdline").read_text(errors="ignore")
        }

    before = servers()
    port = free_port()
    results = serve_and_classify(packaged_bento["archive"], EXTRA[:3], port)
    assert [r["file"] for r in results] == [str(p) for p in EXTRA[:3]]
    for result, path in zip(results, EXTRA[:3]):
        assert result["prediction"] == onnx_answer(packaged_bento["model_dir"], path.read_bytes())[0]
    # Stopped: no new server process is left and the port is free again.
    assert servers() <= before
    with socket.socket() as sock:
        # SO_REUSEADDR: closed connections may linger in TIME_WAIT; a live listener would
        # still make bind fail.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
