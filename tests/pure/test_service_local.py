"""The served bento over real HTTP: answers, metadata, every malformed request, every limit.

The pure-tier tests of test_service (the rest: tests/servers/test_service.py, and the two that
start `bentoml serve` themselves: tests/servers/test_serve_local.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from planets_mlops.app.dev import hostile_images as hostile
from planets_mlops.preprocess import PreprocessConfig, preprocess_image
from tests.support.fixtures.data import PLANETS

EXTRA = sorted((PLANETS / "extra").glob("*.jpg"))


def _decoder(limits: Any = None, **settings: Any) -> Any:
    from planets_mlops.imaging import LIMITS
    from planets_mlops.service.decoding import Decoder
    from planets_mlops.service.settings import ServingSettings

    return Decoder(PreprocessConfig(), ServingSettings(**settings), limits or LIMITS)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PLANETS_WORKERS", "abc"),
        ("PLANETS_MAX_REQUEST_PIXELS", "-5"),
        ("PLANETS_DECODE_TIMEOUT_S", "inf"),
        ("PLANETS_METRICS", "maybe"),
    ],
)
def test_serve_bento_names_a_bad_serving_variable(
    packaged_bento: dict[str, Any], name: str, value: str
) -> None:
    from planets_mlops.app.dev.serve_local import serve_bento
    from planets_mlops.errors import InvalidParameterError

    with (
        pytest.raises(InvalidParameterError) as caught,
        serve_bento(packaged_bento["archive"], env={name: value}),
    ):
        pass
    assert name in str(caught.value) and repr(value) in str(caught.value)
    assert "Unset" in str(caught.value) or "Set env" in str(caught.value)


def test_the_serving_entrypoint_refuses_a_bad_variable_before_downloading(tmp_path: Path) -> None:
    from planets_mlops.serving_entrypoint import main

    env = {"BENTO_URI": str(tmp_path / "absent.bento"), "BENTO_TAG": "a:b", "PLANETS_DECODE_QUEUE": "0"}
    assert main(env) == 2


def test_decoder_stops_a_heavy_request_at_its_deadline() -> None:
    import asyncio

    from planets_mlops.service.decoding import Refused

    decoder = _decoder(decode_timeout_s=0.001, inline_decode_pixels=1)
    blobs = [hostile.gradient_png(2048)] * 4
    with pytest.raises(Refused) as caught:
        asyncio.run(decoder.batch(blobs))
    assert caught.value.error.status == 429
    assert "PLANETS_DECODE_TIMEOUT_S" in caught.value.error.message
    assert caught.value.error.headers()["Retry-After"].isdigit()
    decoder._pool.shutdown(wait=True)
    assert decoder.admitted == 0  # the abandoned work gave its slot back when it stopped
    decoder.close()


def test_a_scan_bomb_decode_is_killed_at_the_deadline_and_frees_its_slot() -> None:
    """Issue 26, defect 1: a decode that runs for minutes is stopped at its deadline.

    The image limits are widened so that the bomb (400,000 scans, tens of seconds of libjpeg work
    in one call) reaches the decoder: a thread can only stop between images, so on a
    thread its slot stayed taken for minutes. The child decoding it is killed at the
    deadline, the slot is free at once, and the next request gets a fresh child.
    """
    import asyncio
    import dataclasses
    import time

    from planets_mlops.imaging import LIMITS
    from planets_mlops.service.decoding import Refused

    decoder = _decoder(dataclasses.replace(LIMITS, max_scans=10**6), decode_timeout_s=1, decode_queue=1)
    # 1024x1024 of 400,000 scans: about 30 s of libjpeg work in one call here (512x512 of
    # 100,000 scans took 2 s, under the deadline on a fast machine).
    bomb = hostile.progressive_scan_bomb(1024, 400_000)
    try:
        started = time.monotonic()
        with pytest.raises(Refused) as caught:
            asyncio.run(decoder.batch([bomb]))
        assert caught.value.error.status == 429
        assert "PLANETS_DECODE_TIMEOUT_S" in caught.value.error.message
        waited = time.monotonic()
        while decoder.admitted and time.monotonic() - waited < 5:
            time.sleep(0.05)
        assert decoder.admitted == 0, "the bomb still holds its decode slot"
        assert time.monotonic() - started < 10  # the bomb alone takes minutes here
        (child,) = decoder.processes
        assert child.pid is None  # killed, not left running
        photo = hostile.encode(Image.open(EXTRA[0]).convert("RGB"), "JPEG", progressive=True)
        assert np.array_equal(asyncio.run(decoder.batch([photo]))[0], preprocess_image(photo))
        assert child.pid is not None  # a fresh child answered
    finally:
        decoder.close()


def test_a_progressive_jpeg_is_decoded_as_heavy_whatever_its_pixels() -> None:
    """Issue 26, defect 1: a 128x128 progressive JPEG is never decoded on the event loop."""
    import asyncio

    from planets_mlops.imaging import LIMITS
    from planets_mlops.service.inference import read_headers

    photo = Image.open(EXTRA[0]).convert("RGB")
    progressive = hostile.encode(photo, "JPEG", progressive=True)
    baseline = hostile.encode(photo, "JPEG")
    decoder = _decoder()
    try:
        assert decoder.is_light(read_headers([baseline] * 4, LIMITS))
        assert not decoder.is_light(read_headers([progressive], LIMITS))
        assert not decoder.is_light(read_headers([baseline, hostile.progressive_scan_bomb(64, 20)], LIMITS))
        batch = asyncio.run(decoder.batch([progressive]))
        assert len(decoder.processes) == 1  # it went to a decode child
        assert np.array_equal(batch[0], preprocess_image(progressive))
    finally:
        decoder.close()


def test_decoder_light_and_heavy_paths_give_the_same_batch() -> None:
    import asyncio

    blobs = [path.read_bytes() for path in EXTRA[:6]]
    inline = asyncio.run(_decoder().batch(blobs))
    threaded = asyncio.run(_decoder(inline_decode_pixels=1).batch(blobs))
    assert inline.shape == (6, 32, 32, 1)
    assert np.array_equal(inline, threaded)
    assert np.array_equal(inline[0], preprocess_image(blobs[0]))


def test_the_light_path_decodes_the_files_it_opened_to_the_bits_of_preprocess_image() -> None:
    """Each file is opened once (header, budget, pixels); the tensors are preprocess_image's."""
    import asyncio

    from planets_mlops.service.decoding import Refused

    photo = Image.open(EXTRA[0])
    blobs = [
        EXTRA[1].read_bytes(),
        hostile.encode(photo.convert("L"), "JPEG"),
        hostile.encode(photo.convert("RGBA"), "PNG"),
        hostile.encode(photo.convert("P"), "GIF"),
        hostile.png16(np.asarray(photo.convert("L"), np.uint16) * 257),
    ]
    for config in (PreprocessConfig(), PreprocessConfig(image_size=20, grayscale=False)):
        decoder = _decoder()
        decoder.config = config
        batch = asyncio.run(decoder.batch(blobs))
        expected = np.stack([preprocess_image(blob, config) for blob in blobs])
        assert batch.tobytes() == expected.tobytes()
    # A file that fails only when its pixels are decoded: refused, named by its position.
    broken = hostile.truncated(EXTRA[2].read_bytes(), 0.3)
    with pytest.raises(Refused) as caught:
        asyncio.run(_decoder().batch([blobs[0], broken]))
    assert caught.value.error.status == 400
    assert caught.value.error.message.startswith("Image 1 of 2: Cannot decode image upload")


def test_decoder_refuses_over_budget_before_decoding() -> None:
    import asyncio

    from planets_mlops.service.decoding import Refused

    decoder = _decoder(max_request_pixels=1000, inline_decode_pixels=1000)
    # Corrupt pixel data behind a valid header: only a decode would notice it.
    broken = hostile.gradient_png(64)[:60] + b"\x00" * 40
    with pytest.raises(Refused) as caught:
        asyncio.run(decoder.batch([broken]))
    assert caught.value.error.status == 413


def test_only_variables_nobody_reads_are_called_unknown():
    from planets_mlops.service.settings import ServingSettings

    env = {
        "PLANETS_INBOX": "/tmp/inbox",  # read by the inbox, not by ServingSettings
        "PLANETS_INBOX_MIN_MARGIN": "0.2",
        "PLANETS_MONITORING_URI": "/tmp/records",
        "PLANETS_MONITORING_SAMPEL": "0.5",
        "HOME": "/root",
    }
    assert ServingSettings.unknown_variables(env) == [
        "PLANETS_MONITORING_SAMPEL (did you mean PLANETS_MONITORING_SAMPLE?)"
    ]
