"""gs:// URIs, and a model folder through a real GCS emulator (fake-gcs-server); no mocks.

The servers-tier tests of test_storage (the rest: tests/pure/test_storage.py).
"""

from __future__ import annotations

import os

import pytest

from tests.support.helpers import tree_digest, upload_to_gcs

BUCKET = "planets-artifacts"


@pytest.fixture(scope="module")
def bucket(gcs_emulator):
    return gcs_emulator.make_bucket(BUCKET)


def test_model_folder_round_trip_keeps_every_byte(bucket, tmp_path):
    from planets_mlops.storage_paths import resolve_model_dir

    model = tmp_path / "model"
    model.mkdir()
    # Random bytes include every byte value, CR and LF among them (see gcs-dvc.md).
    (model / "model.onnx").write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    (model / "classes.json").write_text('["Earth", "Moon"]')
    for path in model.iterdir():
        upload_to_gcs(path, f"{bucket}/models/m1/{path.name}")

    local = resolve_model_dir(f"{bucket}/models/m1")

    assert tree_digest(local) == tree_digest(model)
