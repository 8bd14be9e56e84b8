"""The served bento over real HTTP: answers, metadata, every malformed request, every limit.

``bento_server`` (tests/support/fixtures/serving.py) runs the real ``bentoml serve`` of a bento
built from a tiny trained model, with one worker, a 1 MB upload limit, batches of 8 and
small pixel, queue and timeout limits. Hostile files are built by planets_mlops/app/dev/hostile_images.py.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from planets_mlops.app.dev import hostile_images as hostile
from planets_mlops.preprocess import PreprocessConfig, preprocess_image
from tests.support.fixtures.data import PLANETS
from tests.support.fixtures.serving import (
    SERVED_METRICS,
    TEST_BODY_TIMEOUT_S,
    TEST_HEADER_TIMEOUT_S,
    TEST_MAX_BATCH,
    TEST_MAX_REQUEST_PIXELS,
    TEST_MAX_UPLOAD_BYTES,
    TEST_REVISION,
    TEST_UPLOADS_IN_FLIGHT,
)

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
    from planets_mlops.model_folder import predict_logits, softmax

    config = PreprocessConfig.from_dict(json.loads((model_dir / "preprocess.json").read_text()))
    classes = json.loads((model_dir / "classes.json").read_text())
    logits = predict_logits(model_dir, preprocess_image(blob, config)[None])
    return classes[int(np.argmax(logits[0]))], softmax(logits.astype(np.float64))[0]


def assert_answer(body: dict[str, Any], classes: list[str]) -> None:
    assert set(body) == {
        "prediction",
        "closest_class",
        "probabilities",
        "recognised",
        "known_score",
        "known_threshold",
    }
    assert list(body["probabilities"]) == classes
    probabilities = np.array(list(body["probabilities"].values()))
    assert probabilities.sum() == pytest.approx(1.0, abs=1e-9)
    assert body["closest_class"] == classes[int(np.argmax(probabilities))]
    assert body["recognised"] == (body["known_score"] >= body["known_threshold"])
    assert body["prediction"] == (body["closest_class"] if body["recognised"] else None)


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
    assert body["closest_class"] == prediction
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
    assert response.json()["closest_class"] == onnx_answer(packaged_bento["model_dir"], blob)[0]


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
    # The bento was packaged with the old name val_acc: /metadata shows the current one.
    assert body["metrics"] == SERVED_METRICS
    assert body["preprocess"] == json.loads((packaged_bento["model_dir"] / "preprocess.json").read_text())
    assert body["guard"] == json.loads((packaged_bento["model_dir"] / "guard.json").read_text())


def guard_scores(model_dir: Path, paths: list[Path]) -> np.ndarray:
    """The guard's scores computed outside the service, from the model folder itself."""
    from planets_mlops.guard import load_guard
    from planets_mlops.model_folder import predict_outputs

    config = PreprocessConfig.from_dict(json.loads((model_dir / "preprocess.json").read_text()))
    tensors = np.stack([preprocess_image(p, config) for p in paths])
    _, embedding = predict_outputs(model_dir, tensors)
    return load_guard(model_dir).scores(embedding, tensors)


def test_known_image_is_recognised_and_unseen_one_is_not(
    http: Any, packaged_bento: dict[str, Any], small_raw: Path, small_prepared: Path
) -> None:
    from planets_mlops.prepared import load_manifest

    model_dir = packaged_bento["model_dir"]
    threshold = json.loads((model_dir / "guard.json").read_text())["threshold"]
    # Known: an image the model was trained on (in the guard's bank, score 1).
    known = small_raw / load_manifest(small_prepared)["splits"]["train"]["files"][0]
    body = http.post("/predict", files={"image": (known.name, known.read_bytes())}).json()
    assert body["recognised"] is True
    assert body["prediction"] == body["closest_class"] == onnx_answer(model_dir, known.read_bytes())[0]
    assert body["known_score"] == pytest.approx(1.0, abs=1e-5)
    # Unseen: planets of classes the model never saw; the guard (outside the service)
    # rejects some of them, and the service must then give no prediction.
    candidates = [
        sorted((PLANETS / "raw" / name).iterdir())[0]
        for name in ("Mars", "Neptune", "Pluto", "Saturn", "Uranus", "Venus", "Mercury")
    ]
    scores = guard_scores(model_dir, candidates)
    rejected = [path for path, score in zip(candidates, scores) if score < threshold]
    assert rejected, f"the guard recognised every unseen class (scores {scores}, threshold {threshold})"
    for path in rejected:
        body = http.post("/predict", files={"image": (path.name, path.read_bytes())}).json()
        assert body["recognised"] is False, body
        assert body["prediction"] is None
        assert body["closest_class"] in packaged_bento["classes"]
        assert body["known_score"] < body["known_threshold"] == threshold


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
        "too large",
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


# --- Hostile input: pixel budget, image limits, 16-bit images, odd formats -------------


def test_an_image_over_the_size_limit_is_refused_from_its_header(http: Any) -> None:
    """8800x8800 is under Pillow's bomb guard; it is far over what a 128x128 model needs."""
    blob = hostile.huge_png(8800)
    assert len(blob) < 200_000
    assert_refused(http.post("/predict", files={"image": ("huge.png", blob)}), 400, "too large")
    batch = http.post("/predict_batch", files=[("image", ("a.jpg", _jpeg())), ("image", ("h.png", blob))])
    assert_refused(batch, 400, "image 1 of 2")


def test_a_progressive_jpeg_scan_bomb_gets_400_and_the_worker_stays_live(http: Any) -> None:
    """Issue 26, defect 1: 512x512 counted as light, it held the worker's event loop for 12-37 s."""
    import time

    bomb = hostile.progressive_scan_bomb(512, 60_000)
    assert len(bomb) < TEST_MAX_UPLOAD_BYTES
    started = time.monotonic()
    assert_refused(http.post("/predict", files={"image": ("bomb.jpg", bomb)}), 400, "JPEG scans")
    assert time.monotonic() - started < 10
    assert http.get("/livez").status_code == 200
    photo = hostile.encode(Image.open(EXTRA[0]).convert("RGB"), "JPEG", progressive=True)
    answer = http.post("/predict", files={"image": ("progressive.jpg", photo)})
    assert answer.status_code == 200, answer.text


def test_a_request_over_the_pixel_budget_gets_413_before_decoding(http: Any) -> None:
    side = 1024  # each image is within the per-image limits; together they are not
    count = TEST_MAX_REQUEST_PIXELS // (side * side) + 1
    blob = hostile.gradient_png(side)
    response = http.post("/predict_batch", files=[("image", (f"{i}.png", blob)) for i in range(count)])
    assert_refused(response, 413, "too many pixels")
    assert "PLANETS_MAX_REQUEST_PIXELS" in response.json()["error"]
    within = http.post("/predict_batch", files=[("image", (f"{i}.png", blob)) for i in range(count - 1)])
    assert within.status_code == 200, within.text
    assert len(within.json()["predictions"]) == count - 1


def test_heavy_requests_beyond_the_decode_queue_get_429_and_light_ones_still_pass(http: Any) -> None:
    """The test server decodes one heavy request at a time (PLANETS_DECODE_QUEUE=1).

    Three clients send heavy batches (4 MP each, within the budget) back to back; light
    requests and /livez sent meanwhile are answered, and every heavy one is answered 200
    or 429 with Retry-After, never 5xx.
    """
    import concurrent.futures

    blob = hostile.gradient_png(1024)
    files = [("image", (f"{i}.png", blob)) for i in range(TEST_MAX_REQUEST_PIXELS // (1024 * 1024))]

    def heavy(_: int) -> list[Any]:
        return [http.post("/predict_batch", files=files) for _ in range(4)]

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        pending = [pool.submit(heavy, i) for i in range(3)]
        light = [http.post("/predict", files={"image": ("a.jpg", _jpeg())}) for _ in range(3)]
        livez = http.get("/livez")
        answers = [r for f in pending for r in f.result()]
    statuses = sorted(r.status_code for r in answers)
    assert set(statuses) <= {200, 429}, statuses
    assert 200 in statuses and 429 in statuses, statuses
    busy = next(r for r in answers if r.status_code == 429)
    assert busy.headers["retry-after"].isdigit()
    assert "PLANETS_DECODE_QUEUE" in busy.json()["error"]
    assert [r.status_code for r in light] == [200, 200, 200]
    assert livez.status_code == 200


def _gray_png(array: np.ndarray) -> bytes:
    return encode(Image.fromarray(array, "L"), "PNG")


def test_16_bit_png_is_classified_like_its_8_bit_original(http: Any) -> None:
    """A photo stored with 16 bits per sample (v * 257) must decode to the same pixels."""
    for path in EXTRA[:4]:
        gray = hostile.luma(path)
        eight = http.post("/predict", files={"image": ("a.png", _gray_png(gray))}).json()
        sixteen = http.post(
            "/predict", files={"image": ("b.png", hostile.png16(gray.astype(np.uint16) * 257))}
        )
        rgb16 = hostile.png16(np.repeat(gray[:, :, None], 3, axis=2).astype(np.uint16) * 257)
        sixteen_rgb = http.post("/predict", files={"image": ("c.png", rgb16)})
        assert sixteen.status_code == sixteen_rgb.status_code == 200, sixteen.text
        for other in (sixteen.json(), sixteen_rgb.json()):
            assert other["prediction"] == eight["prediction"]
            np.testing.assert_allclose(
                list(other["probabilities"].values()), list(eight["probabilities"].values()), atol=1e-6
            )


HOSTILE_FILES = {
    "corrupt DDS": (hostile.corrupt_dds, 400, "accepted format"),
    "corrupt ICO": (hostile.corrupt_ico, 400, "accepted format"),
    "TIFF bomb": (hostile.tiff_bomb, 400, "accepted format"),
    "float TIFF": (hostile.float_tiff, 400, "accepted format"),
    "WebP": (lambda: encode(Image.new("RGB", (16, 16)), "WEBP"), 400, "accepted format"),
    "truncated PNG": (lambda: hostile.truncated(hostile.gradient_png(300)), 400, "cannot decode"),
    "truncated JPEG": (lambda: hostile.truncated(_jpeg(), 0.6), 400, "cannot decode"),
    "PNG header only": (lambda: hostile.gradient_png(300)[:33], 400, "cannot decode"),
    "JPEG magic only": (lambda: b"\xff\xd8\xff\xe0" + b"\x00" * 40, 400, "cannot decode"),
    "GIF magic only": (lambda: b"GIF89a" + b"\xff" * 20, 400, "cannot decode"),
    "BMP with a huge header size": (
        lambda: b"BM" + b"\x00" * 12 + (1 << 31).to_bytes(4, "little") + b"\x00" * 40,
        400,
        "cannot decode",
    ),
    "zero-size PNG": (lambda: hostile.png_from_rows(0, 0, 8, 0, b""), 400, "decode"),
    "animated GIF, 300 frames": (lambda: hostile.animated_gif(300), 200, ""),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_FILES))
def test_hostile_files_never_get_a_5xx(http: Any, packaged_bento: dict[str, Any], case: str) -> None:
    build, status, words = HOSTILE_FILES[case]
    blob = build()
    for response in (
        http.post("/predict", files={"image": ("x.bin", blob)}),
        http.post("/predict", content=blob, headers={"Content-Type": "application/octet-stream"}),
    ):
        if status == 200:
            assert response.status_code == 200, response.text
            assert_answer(response.json(), packaged_bento["classes"])
        else:
            assert_refused(response, status, words)
    after = http.post("/predict", files={"image": ("a.jpg", _jpeg())})
    assert after.status_code == 200


def test_random_damage_to_real_files_never_gets_a_5xx(http: Any) -> None:
    """Bytes flipped and cut at random (seeded) in real PNG, JPEG, GIF and BMP files."""
    rng = np.random.default_rng(12)
    originals = [
        _jpeg(),
        hostile.gradient_png(200),
        encode(synthetic("RGB", (40, 30)), "GIF"),
        encode(synthetic("RGB", (40, 30)), "BMP"),
        hostile.png16(np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)),
    ]
    statuses = []
    for original in originals:
        for _ in range(12):
            data = bytearray(original)
            for position in rng.integers(0, len(data), size=int(rng.integers(1, 8))):
                data[position] = int(rng.integers(0, 256))
            if rng.random() < 0.5:
                data = data[: int(rng.integers(1, len(data)))]
            statuses.append(http.post("/predict", files={"image": ("x", bytes(data))}).status_code)
    assert set(statuses) <= {200, 400}, statuses


# --- Connection limits: slow heads, big heads, stalled bodies -------------------------


def _connect(url: str) -> Any:
    import socket
    import urllib.parse

    parsed = urllib.parse.urlparse(url)
    sock = socket.create_connection((parsed.hostname, parsed.port), timeout=TEST_HEADER_TIMEOUT_S * 20)
    return sock


def _read_all(sock: Any) -> bytes:
    """Everything the server sends until it closes the connection (or the socket times out)."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


@pytest.mark.parametrize(
    "sent", [b"", b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Ty"], ids=["silent", "slow"]
)
def test_a_client_that_never_finishes_its_head_is_cut_off(bento_server: Any, http: Any, sent: bytes) -> None:
    """Slowloris: the server answers 408 and closes, instead of holding the connection."""
    with _connect(bento_server.url) as sock:
        sock.sendall(sent)
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"PLANETS_HEADER_TIMEOUT_S" in answer
    assert http.get("/livez").status_code == 200


def test_a_head_larger_than_the_limit_gets_431(bento_server: Any) -> None:
    with _connect(bento_server.url) as sock:
        sock.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Filler: " + b"a" * 100_000)
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]


def _read_response(sock: Any) -> bytes:
    """One complete HTTP response (head and Content-Length body) from a kept-alive socket."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        assert chunk, received
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, received
        body += chunk
    return head + b"\r\n\r\n" + body


def test_a_complete_head_on_a_kept_alive_connection_is_served(bento_server: Any) -> None:
    with _connect(bento_server.url) as sock:
        for _ in range(2):
            sock.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _read_response(sock).startswith(b"HTTP/1.1 200")


def _stalled_upload(url: str) -> Any:
    sock = _connect(url)
    sock.sendall(
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n"
        + b"\xff\xd8" * 50
    )
    return sock


def test_a_stalled_upload_gets_408_and_uploads_in_flight_are_bounded(bento_server: Any, http: Any) -> None:
    stalled = [_stalled_upload(bento_server.url) for _ in range(TEST_UPLOADS_IN_FLIGHT)]
    try:
        import time

        time.sleep(TEST_BODY_TIMEOUT_S / 4)  # let the server start reading all of them
        one_more = http.post("/predict", files={"image": ("a.jpg", _jpeg())})
        answers = [_read_all(sock) for sock in stalled]
    finally:
        for sock in stalled:
            sock.close()
    assert_refused(one_more, 429, "PLANETS_UPLOADS_IN_FLIGHT")
    for answer in answers:
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), answer[:300]
        assert b"PLANETS_BODY_TIMEOUT_S" in body
    assert http.post("/predict", files={"image": ("a.jpg", _jpeg())}).status_code == 200


# --- Serving settings are checked at start-up, naming the variable ----------------------


# --- The decoder of the service, in process (no server) ---------------------------------


@pytest.fixture(scope="module")
def bentoml_path_http(packaged_bento: dict[str, Any]) -> Any:
    """The session's bento and limits with BentoML's access log on: every request takes
    BentoML's own path (router, context, API wrapper) instead of the service's fast path."""
    import httpx

    from planets_mlops.app.dev.serve_local import serve_bento

    env = {
        "PLANETS_WORKERS": "1",
        "PLANETS_ACCESS_LOG": "true",
        "PLANETS_MAX_UPLOAD_BYTES": str(TEST_MAX_UPLOAD_BYTES),
        "PLANETS_MAX_BATCH": str(TEST_MAX_BATCH),
        "PLANETS_MAX_REQUEST_PIXELS": str(TEST_MAX_REQUEST_PIXELS),
        "PLANETS_HEADER_TIMEOUT_S": str(TEST_HEADER_TIMEOUT_S),
        "PLANETS_BODY_TIMEOUT_S": str(TEST_BODY_TIMEOUT_S),
        "PLANETS_UPLOADS_IN_FLIGHT": str(TEST_UPLOADS_IN_FLIGHT),
    }
    with serve_bento(packaged_bento["archive"], env=env, ready_timeout=60) as server:
        with httpx.Client(base_url=server.url, timeout=30, trust_env=False) as client:
            yield client


ANSWERED = {
    **{case: send for case, (send, _, _) in MALFORMED.items()},
    "one image": lambda h: h.post("/predict", files={"image": ("a.jpg", _jpeg())}),
    "raw body": lambda h: h.post("/predict", content=_jpeg(), headers={"Content-Type": "image/jpeg"}),
    "a batch": lambda h: h.post(
        "/predict_batch", files=[("image", (p.name, p.read_bytes())) for p in EXTRA[:3]]
    ),
    "bentoml pickle": lambda h: h.post(
        "/predict", content=b"x", headers={"Content-Type": "application/vnd.bentoml+pickle"}
    ),
    "get predict": lambda h: h.get("/predict"),
}


@pytest.mark.parametrize("case", sorted(ANSWERED))
def test_the_fast_path_answers_as_bentomls_own_path(http: Any, bentoml_path_http: Any, case: str) -> None:
    """POST /predict and /predict_batch skip BentoML's per-request machinery (the service's
    ``FastPredict``) and answer the same: status, body, and the headers a client reads."""
    send = ANSWERED[case]
    fast, bentoml_path = send(http), send(bentoml_path_http)
    assert fast.status_code == bentoml_path.status_code, (fast.text, bentoml_path.text)
    assert fast.content == bentoml_path.content
    for header in ("content-type", "retry-after", "server"):
        assert fast.headers.get_list(header) == bentoml_path.headers.get_list(header), header


def test_predict_batch_answers_a_list_even_when_the_batch_limit_is_one(
    packaged_bento: dict[str, Any],
) -> None:
    """The fast path tells /predict_batch by its route: with ``PLANETS_MAX_BATCH=1`` its
    answer is still ``{"predictions": [...]}`` (it once answered as /predict, by the limit)."""
    import httpx

    from planets_mlops.app.dev.serve_local import serve_bento

    env = {"PLANETS_WORKERS": "1", "PLANETS_MAX_BATCH": "1"}
    with serve_bento(packaged_bento["archive"], env=env, ready_timeout=60) as server:
        with httpx.Client(base_url=server.url, timeout=30, trust_env=False) as client:
            batch = client.post("/predict_batch", files=[("image", ("a.jpg", _jpeg()))])
            single = client.post("/predict", files={"image": ("a.jpg", _jpeg())})
            two = client.post("/predict_batch", files=[("image", ("a.jpg", _jpeg()))] * 2)
    assert batch.status_code == 200 and single.status_code == 200, (batch.text, single.text)
    assert batch.json() == {"predictions": [single.json()]}
    assert two.status_code == 400 and "1" in two.json()["error"], two.text


def test_two_workers_each_take_connections_opened_together(packaged_bento: dict[str, Any]) -> None:
    """With 2 workers, 16 keep-alive connections opened at once land on both (listening.py):
    each worker past the first listens on a socket of its own in one SO_REUSEPORT group."""
    import os
    import socket

    import psutil

    from planets_mlops.app.dev.serve_local import serve_bento

    with serve_bento(packaged_bento["archive"], env={"PLANETS_WORKERS": "2"}, ready_timeout=60) as server:
        host, port = "127.0.0.1", int(server.url.rsplit(":", 1)[1])
        workers = [
            p
            for p in psutil.Process(server.process.pid).children(recursive=True)
            if "--worker-id" in p.cmdline()
        ]
        assert len(workers) == 2, [p.cmdline() for p in workers]
        connections = [socket.create_connection((host, port), timeout=10) for _ in range(16)]
        try:
            for conn in connections:  # one request each: every connection is accepted by then
                conn.sendall(f"GET /livez HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            for conn in connections:
                assert conn.recv(4096).startswith(b"HTTP/1.1 200")
            held = {
                worker.pid: sum(
                    1
                    for c in worker.net_connections(kind="tcp")
                    if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port == port
                )
                for worker in workers
            }
            # The socket each worker listens on (its inode): two different ones.
            listening = [
                {
                    os.readlink(f"/proc/{worker.pid}/fd/{c.fd}")
                    for c in worker.net_connections(kind="tcp")
                    if c.status == psutil.CONN_LISTEN and c.laddr.port == port
                }
                for worker in workers
            ]
        finally:
            for conn in connections:
                conn.close()
    # Linux hashes connections over the two sockets: one worker holding all 16 has odds of 3e-5.
    assert sum(held.values()) == 16 and min(held.values()) > 0, held
    assert all(len(inodes) == 1 for inodes in listening) and listening[0] != listening[1], listening


def test_a_port_taken_before_the_server_binds_it_is_replaced(
    packaged_bento: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """serve_bento chooses a free port, closes it, and bentoml serve binds it later; another
    socket may take it meanwhile (bentoml serve's own circus endpoints pick free ports too).
    The race cannot be forced with real processes, so ``free_port`` is made to return, first,
    a port that a non-HTTP listener holds (it answers like ZeroMQ): the readiness poll must
    not stop at its answer, and the server must come up on another port."""
    import socket
    import threading

    from planets_mlops.app.dev import serve_local

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(16)
    taken_port = taken.getsockname()[1]

    def answer_like_zeromq() -> None:
        while True:
            try:
                conn, _ = taken.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"\xff" + b"\x00" * 8 + b"\x7f")

    threading.Thread(target=answer_like_zeromq, daemon=True).start()
    ports = iter([taken_port])
    real_free_port = serve_local.free_port
    monkeypatch.setattr(serve_local, "free_port", lambda: next(ports, None) or real_free_port())
    try:
        with serve_local.serve_bento(packaged_bento["archive"], env={"PLANETS_WORKERS": "1"}) as server:
            assert not server.url.endswith(f":{taken_port}")
            assert serve_local._get(f"{server.url}/readyz") == 200
        # A port the caller names is not replaced: the error says the address is in use.
        with (
            pytest.raises(serve_local.PortTakenError, match="(?i)address already in use"),
            serve_local.serve_bento(packaged_bento["archive"], port=taken_port, env={"PLANETS_WORKERS": "1"}),
        ):
            pass
    finally:
        taken.close()
