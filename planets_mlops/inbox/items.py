"""One kept input: its content hash, why it was kept and the answer the service gave.

The JSON document of an item, read as outside input (bounded, checked, never trusted).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from typing import Any

from planets_mlops import safejson
from planets_mlops.errors import DataError
from planets_mlops.inbox.scores import (
    REASONS,
)

log = logging.getLogger(__name__)


FORMAT = "planets-inbox/1"


# An item's JSON is small (scores of a few classes); anything bigger is not ours.
MAX_ITEM_JSON_BYTES = 64 * 1024


_EXTENSIONS = {b"\xff\xd8\xff": ".jpg", b"\x89PNG": ".png", b"GIF8": ".gif", b"BM": ".bmp"}


_SHA_CHARS = set("0123456789abcdef")


def image_extension(data: bytes) -> str | None:
    """File extension from the image's magic bytes; None when it is no JPEG/PNG/GIF/BMP."""
    for magic, extension in _EXTENSIONS.items():
        if data.startswith(magic):
            return extension
    return None


@dataclass(frozen=True)
class InboxItem:
    """One kept input: its content hash, why it was kept and the answer the service gave.

    Attributes:
        sha256: Hex SHA-256 of the image bytes; also the objects' name.
        extension: The image object's extension (``.jpg``, ``.png``, ...).
        reason: ``unrecognised`` or ``low_margin``.
        uncertainty: :func:`uncertainty` of the answer.
        answer: The service's answer (prediction, closest class, probabilities, guard score).
        model: The model that answered (its tag).
        received_at: Unix time the service answered.
    """

    sha256: str
    extension: str
    reason: str
    uncertainty: float
    answer: dict[str, Any]
    model: str
    received_at: float

    @property
    def image_name(self) -> str:
        """Name of the image object."""
        return f"{self.sha256}{self.extension}"

    def to_json(self) -> bytes:
        """The item's JSON object."""
        return json.dumps({"format": FORMAT, **asdict(self)}, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes, name: str) -> InboxItem:
        """Parse and check an item's JSON object.

        Args:
            data: The object's bytes.
            name: Its name (must be ``<sha256>.json`` of the item it holds).

        Raises:
            DataError: not an item of this format, or its fields do not fit its name.
        """
        if len(data) > MAX_ITEM_JSON_BYTES:
            raise DataError(f"{name!r}: {len(data)} bytes, more than an inbox item holds")
        try:
            doc = safejson.loads(data)
        except safejson.JsonError as exc:
            raise DataError(f"{name!r}: {exc}") from exc
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise DataError(f"{name!r} is not a {FORMAT} item")
        try:
            item = cls(
                sha256=str(doc["sha256"]),
                extension=str(doc["extension"]),
                reason=str(doc["reason"]),
                uncertainty=float(doc["uncertainty"]),
                answer=dict(doc["answer"]),
                model=str(doc.get("model", "")),
                received_at=float(doc.get("received_at", 0.0)),
            )
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise DataError(f"{name!r} is malformed ({str(exc)[:200]!r})") from exc
        if not (math.isfinite(item.uncertainty) and math.isfinite(item.received_at)):
            raise DataError(f"{name!r} holds a non-finite uncertainty or time")
        if name != f"{item.sha256}.json" or not is_sha256(item.sha256):
            raise DataError(f"{name!r} holds item {item.sha256[:70]!r}: the name must be its hash")
        if item.extension not in set(_EXTENSIONS.values()) or item.reason not in REASONS:
            raise DataError(f"{name!r} has extension {item.extension!r} / reason {item.reason!r}")
        return item


def is_sha256(text: str) -> bool:
    """64 lowercase hex digits."""
    return len(text) == 64 and set(text) <= _SHA_CHARS
