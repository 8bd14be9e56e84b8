"""gs:// URIs, and a model folder through a real GCS emulator (fake-gcs-server); no mocks."""

from __future__ import annotations

import pytest

from planets_mlops.errors import InvalidParameterError
from planets_mlops.storage import parse_gs_uri

BUCKET = "planets-artifacts"


@pytest.fixture(scope="module")
def bucket(gcs_emulator):
    return gcs_emulator.make_bucket(BUCKET)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        (
            "gs://planets-artifacts/bentos/planets.bento",
            ("planets-artifacts", "bentos/planets.bento"),
        ),
        ("gs://abc/x", ("abc", "x")),
        ("gs://my.bucket_1/a/b/c.tar.gz", ("my.bucket_1", "a/b/c.tar.gz")),
    ],
)
def test_parse_gs_uri_splits_bucket_and_object(uri, expected):
    assert parse_gs_uri(uri) == expected


@pytest.mark.parametrize(
    "uri",
    [
        "s3://bucket/key",
        "bucket/key",
        "gs://",
        "gs://bucket",
        "gs://bucket/",
        "gs://Upper/key",
        "gs://ab/key",
        "gs://bucket/dir/",
        "",
    ],
)
def test_parse_gs_uri_rejects_malformed(uri):
    with pytest.raises(InvalidParameterError, match="gs_uri"):
        parse_gs_uri(uri)
