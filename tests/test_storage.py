"""gs:// helpers against a real GCS emulator (fake-gcs-server); no mocks."""

from __future__ import annotations

import os

import pytest

from planets_mlops.errors import (
    InvalidParameterError,
    NotFoundError,
    ObjectNotFoundError,
)
from planets_mlops.storage import download_file, parse_gs_uri, upload_file
from tests.helpers import sha256_file

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


def test_round_trip_of_a_few_megabytes_keeps_every_byte(bucket, tmp_path):
    source = tmp_path / "planets.bento"
    # Random bytes include every byte value, CR and LF among them (see gcs-dvc.md).
    source.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    uri = f"{bucket}/bentos/planets.bento"

    assert upload_file(source, uri) == uri
    target = download_file(uri, tmp_path / "back" / "planets.bento")

    assert target.stat().st_size == source.stat().st_size
    assert sha256_file(target) == sha256_file(source)
    assert not (tmp_path / "back" / "planets.bento.partial").exists()


def test_missing_object_names_the_uri(bucket, tmp_path):
    uri = f"{bucket}/bentos/does-not-exist.bento"
    with pytest.raises(ObjectNotFoundError, match="does-not-exist.bento") as info:
        download_file(uri, tmp_path / "x.bento")
    assert uri in str(info.value)
    assert isinstance(info.value, NotFoundError)
    assert not (tmp_path / "x.bento").exists()
    assert not (tmp_path / "x.bento.partial").exists()


def test_missing_bucket_is_not_found(gcs_emulator, tmp_path):
    with pytest.raises(ObjectNotFoundError, match="gs://no-such-bucket-here/a"):
        download_file("gs://no-such-bucket-here/a", tmp_path / "a")


def test_upload_of_missing_local_file_is_clear(bucket, tmp_path):
    with pytest.raises(NotFoundError, match="Local file not found"):
        upload_file(tmp_path / "nope.bento", f"{bucket}/nope.bento")


def test_malformed_uri_fails_before_any_request(tmp_path):
    with pytest.raises(InvalidParameterError, match="gs://BUCKET/PATH"):
        download_file("https://storage.googleapis.com/b/o", tmp_path / "o")
