"""Task image downloads within limits, against a real misbehaving HTTP server on 127.0.0.1
(tests/support/hostile_http.py) and the GCS emulator. The same downloads through the Label Studio client and
the importer, with a real server: tests/servers/test_labelstudio.py.

The servers-tier tests of test_labelstudio_fetch (the rest: tests/pure/test_labelstudio_fetch.py).
"""

from __future__ import annotations

import pytest

from planets_mlops.labelstudio.fetch import (
    ImageFetchError,
)
from tests.pure.test_labelstudio_fetch import client
from tests.support.hostile_http import IMAGE


def test_gcs_objects_over_the_cap_are_refused_before_download(gcs_emulator, tmp_path):
    from planets_mlops.storage import make_client

    bucket = gcs_emulator.make_bucket("fetch-limits")
    blobs = make_client().bucket(bucket[len("gs://") :])
    blobs.blob("big.png").upload_from_string(b"\x00" * 4096)
    blobs.blob("small.png").upload_from_string(IMAGE)
    ls = client(max_bytes=2048)
    with pytest.raises(ImageFetchError, match=r"big\.png is 4096 bytes, over the limit of 2048"):
        ls.fetch_image(f"{bucket}/big.png")
    assert ls.fetch_image(f"{bucket}/small.png") == IMAGE
    with pytest.raises(ImageFetchError, match="not found"):
        ls.fetch_image(f"{bucket}/absent.png")
