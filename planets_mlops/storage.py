"""Small ``gs://`` helpers on google-cloud-storage (bento archives, reports).

With ``STORAGE_EMULATOR_HOST`` set (``http://127.0.0.1:PORT``), the client talks to that
emulator anonymously; otherwise it uses Application Default Credentials (Workload
Identity in a pipeline pod). Uploads and downloads are checksummed end to end.
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

from planets_mlops.errors import (
    InvalidParameterError,
    NotFoundError,
    ObjectNotFoundError,
    StorageError,
)

if TYPE_CHECKING:
    from google.cloud import storage

logger = logging.getLogger(__name__)

# Bucket naming rules (simplified): 3-63 chars (222 with dots), lowercase, digits, - _ .
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")


def parse_gs_uri(uri: str) -> tuple[str, str]:
    """Split ``gs://bucket/path/to/object`` into bucket and object name.

    Args:
        uri: An object URI, ``gs://BUCKET/PATH``.

    Returns:
        ``(bucket, object name)``.

    Raises:
        InvalidParameterError: Not a ``gs://`` URI, a bad bucket name, or no object path.
    """
    if not isinstance(uri, str) or not uri.startswith("gs://"):
        raise InvalidParameterError(
            "gs_uri",
            uri,
            "a URI like gs://BUCKET/PATH",
            "Prefix the location with gs://.",
        )
    bucket, _, name = uri[len("gs://") :].partition("/")
    if not _BUCKET_RE.match(bucket):
        raise InvalidParameterError(
            "gs_uri",
            uri,
            "a bucket of 3-63 lowercase letters, digits, '-', '_' or '.'",
            "Check the bucket name.",
        )
    if not name or name.endswith("/"):
        raise InvalidParameterError(
            "gs_uri",
            uri,
            "a full object path after the bucket",
            "e.g. gs://BUCKET/bentos/planets.bento",
        )
    return bucket, name


def make_client() -> storage.Client:
    """A storage client: anonymous against ``STORAGE_EMULATOR_HOST``, else ADC."""
    from google.cloud import storage

    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(
            project=os.environ.get("GOOGLE_CLOUD_PROJECT", "test"),
            credentials=AnonymousCredentials(),
        )
    try:
        return storage.Client()
    except Exception as exc:  # google.auth raises several types for missing ADC
        raise StorageError(
            f"Cannot create a GCS client: {exc}. Run `gcloud auth application-default "
            "login`, mount a service account, or set STORAGE_EMULATOR_HOST for an "
            "emulator."
        ) from exc


def _translate(exc: Exception, uri: str, action: str) -> StorageError:
    from google.api_core import exceptions as gexc

    if isinstance(exc, gexc.NotFound):
        return ObjectNotFoundError(
            f"Not found: {uri} ({action}). Check the bucket and object path, e.g. with `gsutil ls`."
        )
    if isinstance(exc, (gexc.Forbidden, gexc.Unauthorized)):
        return StorageError(
            f"Access denied to {uri} ({action}): {exc}. Grant the "
            "service account storage.objects access on the bucket."
        )
    return StorageError(f"Cannot {action} {uri}: {exc}")


def upload_file(local: str | Path, gs_uri: str, client: storage.Client | None = None) -> str:
    """Upload one local file to ``gs_uri`` with an MD5 check by the server.

    Args:
        local: File to upload.
        gs_uri: Destination object, ``gs://BUCKET/PATH``.
        client: Storage client; :func:`make_client` when None.

    Returns:
        The ``gs_uri`` written.

    Raises:
        NotFoundError: The local file does not exist.
        StorageError: The bucket is missing, access is denied, or the upload failed.
    """
    local = Path(local)
    bucket_name, name = parse_gs_uri(gs_uri)
    if not local.is_file():
        raise NotFoundError(f"Local file not found: {local}; nothing uploaded to {gs_uri}.")
    client = client or make_client()
    start = time.monotonic()
    try:
        blob = client.bucket(bucket_name).blob(name)
        blob.upload_from_filename(str(local), checksum="md5")
    except Exception as exc:
        raise _translate(exc, gs_uri, "upload to") from exc
    logger.info(
        "uploaded %s (%d bytes) to %s in %.2f s",
        local,
        local.stat().st_size,
        gs_uri,
        time.monotonic() - start,
    )
    return gs_uri


def download_file(gs_uri: str, local: str | Path, client: storage.Client | None = None) -> Path:
    """Download ``gs_uri`` to ``local`` (parents created), checksum verified.

    The object lands in a temporary sibling first, so a failed download never leaves a
    truncated file at ``local``.

    Args:
        gs_uri: Object to download, ``gs://BUCKET/PATH``.
        local: Destination file.
        client: Storage client; :func:`make_client` when None.

    Returns:
        The local path.

    Raises:
        ObjectNotFoundError: The object or bucket does not exist (names the URI).
        StorageError: Access denied, checksum mismatch, or another failure.
    """
    bucket_name, name = parse_gs_uri(gs_uri)
    local = Path(local)
    local.parent.mkdir(parents=True, exist_ok=True)
    partial = local.with_name(local.name + ".partial")
    client = client or make_client()
    start = time.monotonic()
    try:
        blob = client.bucket(bucket_name).blob(name)
        blob.download_to_filename(str(partial), checksum="md5")
    except Exception as exc:
        partial.unlink(missing_ok=True)
        raise _translate(exc, gs_uri, "download") from exc
    partial.replace(local)
    logger.info(
        "downloaded %s to %s (%d bytes) in %.2f s",
        gs_uri,
        local,
        local.stat().st_size,
        time.monotonic() - start,
    )
    return local
