"""The object stores an inbox (and the prediction records) live in: a local folder or gs://.

Both write atomically: a local object through a temporary name renamed into place, a
``gs://`` object with the precondition ``if_generation_match=0``.
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path
from typing import Any, Protocol

from planets_mlops.errors import DataError, InvalidParameterError, NotFoundError

log = logging.getLogger(__name__)


class Store(Protocol):
    """Where the inbox objects live: a flat namespace of small objects."""

    uri: str

    def list_names(self, suffix: str) -> list[str]:
        """Names of the objects ending in ``suffix``, sorted."""

    def put_if_absent(self, name: str, data: bytes) -> bool:
        """Create ``name`` atomically unless it exists; True when this call created it."""

    def get(self, name: str, max_bytes: int) -> bytes:
        """The object's bytes; DataError when larger than ``max_bytes``."""

    def delete(self, name: str) -> None:
        """Remove the object (no error when it is already gone)."""


class LocalStore:
    """A local folder; writes go to a temporary file in the same folder, then rename."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.uri = str(self.folder)

    def list_names(self, suffix: str) -> list[str]:
        """Names of regular files ending in ``suffix`` (temporary files excluded), sorted."""
        if not self.folder.is_dir():
            return []
        return sorted(
            entry.name
            for entry in os.scandir(self.folder)
            if entry.name.endswith(suffix)
            and not entry.name.startswith(".")
            and entry.is_file(follow_symlinks=False)
        )

    def put_if_absent(self, name: str, data: bytes) -> bool:
        """Write ``data`` to a temporary file, then link it into place unless ``name`` exists."""
        self.folder.mkdir(parents=True, exist_ok=True)
        final = self.folder / name
        if final.exists():
            return False
        temporary = self.folder / f".tmp-{uuid.uuid4().hex}"
        try:
            with open(temporary, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            try:
                # link() fails if the name exists: no writer ever replaces another's object.
                os.link(temporary, final)
            except FileExistsError:
                return False
            return True
        finally:
            temporary.unlink(missing_ok=True)

    def get(self, name: str, max_bytes: int) -> bytes:
        """Read a regular file (not a link) of at most ``max_bytes``."""
        path = self.folder / name
        if path.is_symlink() or not path.is_file():
            raise NotFoundError(f"{str(path)!r} is not a file of the inbox")
        size = path.stat().st_size
        if size > max_bytes:
            raise DataError(f"{str(path)!r} is {size} bytes, more than the {max_bytes} allowed")
        return path.read_bytes()

    def delete(self, name: str) -> None:
        """Remove the file if present."""
        (self.folder / name).unlink(missing_ok=True)


class GcsStore:
    """Objects under ``gs://BUCKET/PREFIX/``; created with ``if_generation_match=0``."""

    def __init__(self, uri: str, client: Any = None) -> None:
        from planets_mlops.storage import make_client, parse_gs_uri

        bucket, prefix = parse_gs_uri(uri.rstrip("/") + "/x")
        self.uri = uri.rstrip("/")
        self.prefix = prefix[:-1]  # "PREFIX/" ("" + "x" was only there to pass the parser)
        self.client = client or make_client()
        self.bucket = self.client.bucket(bucket)

    def list_names(self, suffix: str) -> list[str]:
        """Object names directly under the prefix that end in ``suffix``, sorted."""
        names = []
        for blob in self.client.list_blobs(self.bucket, prefix=self.prefix, delimiter="/"):
            name = blob.name[len(self.prefix) :]
            if name.endswith(suffix) and "/" not in name:
                names.append(name)
        return sorted(names)

    def put_if_absent(self, name: str, data: bytes) -> bool:
        """Create the object unless it exists (precondition: generation 0)."""
        from google.api_core import exceptions as gexc

        blob = self.bucket.blob(self.prefix + name)
        try:
            blob.upload_from_string(data, if_generation_match=0, checksum="md5")
        except gexc.PreconditionFailed:
            return False
        return True

    def get(self, name: str, max_bytes: int) -> bytes:
        """Download an object after checking its size."""
        from google.api_core import exceptions as gexc

        blob = self.bucket.get_blob(self.prefix + name)
        if blob is None:
            raise NotFoundError(f"{self.uri}/{name} does not exist")
        if blob.size is not None and blob.size > max_bytes:
            raise DataError(f"{self.uri}/{name} is {blob.size} bytes, more than the {max_bytes} allowed")
        try:
            data = blob.download_as_bytes(if_generation_match=blob.generation)
        except gexc.NotFound as exc:
            raise NotFoundError(f"{self.uri}/{name} disappeared while read") from exc
        if len(data) > max_bytes:
            raise DataError(f"{self.uri}/{name} is {len(data)} bytes, more than the {max_bytes} allowed")
        return data

    def delete(self, name: str) -> None:
        """Delete the object if present."""
        from google.api_core import exceptions as gexc

        try:
            self.bucket.blob(self.prefix + name).delete()
        except gexc.NotFound:
            pass


def open_store(uri: str, client: Any = None) -> Store:
    """A :class:`GcsStore` for ``gs://...``, else a :class:`LocalStore` on the folder.

    Raises:
        InvalidParameterError: an empty location.
    """
    if not isinstance(uri, str) or not uri.strip():
        raise InvalidParameterError(
            "inbox",
            uri,
            "a local folder or gs://BUCKET/PREFIX",
            "Set PLANETS_INBOX or the inbox_uri parameter.",
        )
    if uri.startswith("gs://"):
        return GcsStore(uri, client)
    return LocalStore(Path(uri))
