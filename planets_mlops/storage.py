"""Small ``gs://`` helpers on google-cloud-storage: URI parsing and the client.

With ``STORAGE_EMULATOR_HOST`` set (``http://127.0.0.1:PORT``), the client talks to that
emulator anonymously; otherwise it uses Application Default Credentials (Workload
Identity in a pipeline pod).
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from planets_mlops.errors import InvalidParameterError, StorageError

if TYPE_CHECKING:
    from google.cloud import storage

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
