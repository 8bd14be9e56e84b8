"""The production inbox: images the service rejected or was unsure of, kept for labelling.

The service, when ``PLANETS_INBOX`` names a place (a local folder or ``gs://BUCKET/PREFIX``),
keeps each input that its guard did not recognise (``unrecognised``) or whose top two
class probabilities lie closer than ``PLANETS_INBOX_MIN_MARGIN`` (``low_margin``), with the
answer it gave. The retraining pipeline turns the inbox into Label Studio tasks
(:mod:`planets_mlops.labelstudio.inbox_tasks`), hardest first.

Layout: per item two objects named by the SHA-256 of the image bytes,
``<sha256>.<ext>`` (the image) and ``<sha256>.json`` (:class:`InboxItem`). The JSON is
written last and marks the item complete; readers list JSON objects only.

- Idempotent: the same image twice is one item (content-hash names; the first answer kept).
- Atomic: a local object is written to a temporary name in the same folder and renamed
  into place; a ``gs://`` object is created with the precondition ``if_generation_match=0``
  (created only if absent), so a concurrent writer of the same item never overwrites it.
- Bounded: an item is added only while the inbox holds fewer than ``max_items``, each
  image is at most ``max_image_bytes``. Writers in several processes may each add one
  item past the bound at the moment it fills, no more.
- Off the request path: :class:`InboxWriter` queues items (a bounded queue, dropped and
  counted when full) for one background thread, so a slow store never slows an answer.
- Outside input: a malformed, oversized or mismatched inbox object is skipped with a
  reason by :meth:`Inbox.items`, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import queue
import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from planets_mlops import safejson
from planets_mlops.errors import DataError, InvalidParameterError, NotFoundError
from planets_mlops.knobs import InboxParams

log = logging.getLogger(__name__)

FORMAT = "planets-inbox/1"
UNRECOGNISED = "unrecognised"
LOW_MARGIN = "low_margin"
REASONS = (UNRECOGNISED, LOW_MARGIN)
# An item's JSON is small (scores of a few classes); anything bigger is not ours.
MAX_ITEM_JSON_BYTES = 64 * 1024
_EXTENSIONS = {b"\xff\xd8\xff": ".jpg", b"\x89PNG": ".png", b"GIF8": ".gif", b"BM": ".bmp"}
_SHA_CHARS = set("0123456789abcdef")

ADDED = "added"
DUPLICATE = "duplicate"
FULL = "full"
TOO_LARGE = "too_large"
NOT_AN_IMAGE = "not_an_image"


# ----------------------------------------------------------------------------- scores


def margin(probabilities: Mapping[str, float]) -> float:
    """Top class probability minus the second one (1.0 with a single class)."""
    values = sorted((float(v) for v in probabilities.values()), reverse=True)
    if not values:
        return 0.0
    return values[0] - (values[1] if len(values) > 1 else 0.0)


def uncertainty(answer: Mapping[str, Any]) -> float:
    """How hard an answer is, in [0, 2]; higher is harder.

    A recognised image (or one without a guard) scores ``1 - margin`` in [0, 1]. An image
    the guard did not recognise scores above 1: ``1 + (1 - known_score / threshold)``, the
    further from known images the higher. So sorting by uncertainty puts unknown images
    first, then the closest calls.

    Args:
        answer: One answer of the service (:func:`planets_mlops.service.inference.answers`).
    """
    if answer.get("recognised") is False:
        threshold = float(answer.get("known_threshold") or 0.0)
        score = float(answer.get("known_score") or 0.0)
        closeness = min(max(score / threshold, 0.0), 1.0) if threshold > 0 else 0.0
        return 2.0 - closeness
    return 1.0 - min(max(margin(answer.get("probabilities") or {}), 0.0), 1.0)


def certainty(answer: Mapping[str, Any]) -> float:
    """``1 - uncertainty / 2`` in [0, 1]: Label Studio's prediction score (lowest = hardest)."""
    return 1.0 - uncertainty(answer) / 2.0


def triage(answer: Mapping[str, Any], min_margin: float) -> str | None:
    """Why an answer belongs in the inbox: ``unrecognised``, ``low_margin``, or None."""
    if answer.get("recognised") is False:
        return UNRECOGNISED
    if margin(answer.get("probabilities") or {}) < min_margin:
        return LOW_MARGIN
    return None


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


# ----------------------------------------------------------------------------- stores


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


# ----------------------------------------------------------------------------- inbox


class Inbox:
    """The inbox at one location, with its bounds.

    Args:
        store: Where the objects live (:func:`open_store`).
        params: Bounds and the low-margin threshold.
    """

    def __init__(self, store: Store, params: InboxParams | None = None) -> None:
        self.store = store
        self.params = params or InboxParams()

    def count(self) -> int:
        """Complete items in the inbox."""
        return len(self.store.list_names(".json"))

    def add(self, image: bytes, answer: Mapping[str, Any], model: str = "", reason: str | None = None) -> str:
        """Keep ``image`` with ``answer`` unless it is already there, too large, or the inbox is full.

        Args:
            image: The image bytes as received.
            answer: The service's answer for it.
            model: The answering model's tag.
            reason: Why it is kept; :func:`triage` of the answer when None.

        Returns:
            ``added``, ``duplicate``, ``full``, ``too_large`` or ``not_an_image``.
        """
        if len(image) > self.params.max_image_bytes:
            return TOO_LARGE
        extension = image_extension(image)
        if extension is None:
            return NOT_AN_IMAGE
        sha = hashlib.sha256(image).hexdigest()
        names = set(self.store.list_names(".json"))
        if f"{sha}.json" in names:
            return DUPLICATE
        if len(names) >= self.params.max_items:
            return FULL
        item = InboxItem(
            sha256=sha,
            extension=extension,
            reason=reason or triage(answer, self.params.min_margin) or LOW_MARGIN,
            uncertainty=round(uncertainty(answer), 6),
            answer=_plain(answer),
            model=model,
            received_at=round(time.time(), 3),
        )
        # Image first: a JSON object always has its image.
        self.store.put_if_absent(item.image_name, image)
        return ADDED if self.store.put_if_absent(f"{sha}.json", item.to_json()) else DUPLICATE

    def items(self) -> tuple[list[InboxItem], dict[str, int]]:
        """Every readable item, hardest first; unreadable objects are counted by reason.

        Returns:
            Items sorted by decreasing uncertainty (then hash), and skip reason -> count.
        """
        items: list[InboxItem] = []
        skipped: Counter[str] = Counter()
        images = set(self.store.list_names(""))
        for name in self.store.list_names(".json"):
            try:
                item = InboxItem.from_json(self.store.get(name, MAX_ITEM_JSON_BYTES), name)
            except (DataError, NotFoundError) as exc:
                log.warning("Skipped inbox object %s: %s", name, exc)
                skipped["malformed_item"] += 1
                continue
            if item.image_name not in images:
                skipped["image_missing"] += 1
                continue
            items.append(item)
        items.sort(key=lambda item: (-item.uncertainty, item.sha256))
        return items, dict(skipped)

    def image(self, item: InboxItem) -> bytes:
        """The item's image bytes, checked against its hash.

        Raises:
            DataError: the object is too large or its bytes do not hash to the item's name.
        """
        data = self.store.get(item.image_name, self.params.max_image_bytes)
        if hashlib.sha256(data).hexdigest() != item.sha256:
            raise DataError(f"{self.store.uri}/{item.image_name} does not match its hash")
        return data

    def remove(self, item: InboxItem) -> None:
        """Delete an item (JSON first, so a reader never sees an item without its image)."""
        self.store.delete(f"{item.sha256}.json")
        self.store.delete(item.image_name)


def _plain(answer: Mapping[str, Any]) -> dict[str, Any]:
    """The answer's JSON-able fields, probabilities rounded (keeps the item small)."""
    keep = ("prediction", "closest_class", "recognised", "known_score", "known_threshold")
    plain: dict[str, Any] = {k: answer[k] for k in keep if k in answer}
    probabilities = answer.get("probabilities") or {}
    plain["probabilities"] = {str(k): round(float(v), 6) for k, v in probabilities.items()}
    return plain


# ----------------------------------------------------------------------------- writer


class InboxWriter:
    """Adds items from a bounded queue in one background thread (the service's side).

    Args:
        inbox: The inbox to write to.
        model: The serving model's tag, stored with each item.
        queue_size: Items waiting at most; more are dropped and counted.
    """

    def __init__(self, inbox: Inbox, model: str = "", queue_size: int = 64) -> None:
        self.inbox = inbox
        self.model = model
        self.counts: Counter[str] = Counter()
        self._queue: queue.Queue[tuple[bytes, dict[str, Any]] | None] = queue.Queue(maxsize=queue_size)
        self._thread = threading.Thread(target=self._run, name="planets-inbox", daemon=True)
        self._thread.start()

    def offer(self, images: Sequence[bytes], answers: Sequence[Mapping[str, Any]]) -> int:
        """Queue the images whose answers belong in the inbox; never blocks.

        Args:
            images: The request's images.
            answers: The service's answers, in the same order.

        Returns:
            How many were queued.
        """
        queued = 0
        for image, answer in zip(images, answers):
            if triage(answer, self.inbox.params.min_margin) is None:
                continue
            try:
                self._queue.put_nowait((image, dict(answer)))
                queued += 1
            except queue.Full:
                self.counts["dropped_queue_full"] += 1
        return queued

    def _run(self) -> None:
        while True:
            entry = self._queue.get()
            try:
                if entry is None:
                    return
                image, answer = entry
                try:
                    self.counts[self.inbox.add(image, answer, self.model)] += 1
                except Exception:  # noqa: BLE001 - a store failure must never stop serving
                    self.counts["write_failed"] += 1
                    log.exception("Could not write an item to the inbox %s", self.inbox.store.uri)
            finally:
                self._queue.task_done()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued item is written; False when ``timeout`` ran out."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._queue.unfinished_tasks

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the thread."""
        self.flush(timeout)
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            return
        self._thread.join(timeout)


ENV_URI = "PLANETS_INBOX"
ENV_MAX_ITEMS = "PLANETS_INBOX_MAX_ITEMS"
ENV_MIN_MARGIN = "PLANETS_INBOX_MIN_MARGIN"
# Every variable the inbox reads (the service's settings check counts them as known).
ENV_VARIABLES = (ENV_URI, ENV_MAX_ITEMS, ENV_MIN_MARGIN)


def params_from_env(env: Mapping[str, str] | None = None) -> tuple[str, InboxParams]:
    """The inbox location (empty: off) and its bounds from the environment, every value checked.

    Called at start-up by :meth:`planets_mlops.service.settings.ServingSettings.from_env`, so
    a bad value stops the launcher with a message instead of a worker that restarts in a loop.

    Raises:
        InvalidParameterError: a value outside what its variable accepts; the message names
            the variable (never the field behind it), the value and the fix.
    """
    env = os.environ if env is None else env
    defaults = InboxParams()
    raw_items = env.get(ENV_MAX_ITEMS, "").strip()
    raw_margin = env.get(ENV_MIN_MARGIN, "").strip()
    try:
        max_items = int(raw_items.replace("_", "")) if raw_items else defaults.max_items
        InboxParams(max_items=max_items)
    except (ValueError, InvalidParameterError) as exc:
        raise InvalidParameterError(
            ENV_MAX_ITEMS, raw_items, "a positive integer",
            f"Unset {ENV_MAX_ITEMS} for the default {defaults.max_items}, or set e.g. {ENV_MAX_ITEMS}=500.",
        ) from exc  # fmt: skip
    try:
        min_margin = float(raw_margin) if raw_margin else defaults.min_margin
        InboxParams(min_margin=min_margin)
    except (ValueError, InvalidParameterError) as exc:
        raise InvalidParameterError(
            ENV_MIN_MARGIN, raw_margin, "a number in [0, 1]",
            f"Unset {ENV_MIN_MARGIN} for the default {defaults.min_margin}, or set {ENV_MIN_MARGIN}=0.1.",
        ) from exc  # fmt: skip
    uri = env.get(ENV_URI, "").strip()
    if uri.startswith("gs://") and not uri[len("gs://") :].split("/")[0]:
        raise InvalidParameterError(
            ENV_URI, uri, "gs://BUCKET/PREFIX or a local folder, or empty for no inbox",
            f"Name the bucket, e.g. {ENV_URI}=gs://my-bucket/inbox.",
        )  # fmt: skip
    if "://" in uri and not uri.startswith("gs://"):
        raise InvalidParameterError(
            ENV_URI, uri, "gs://BUCKET/PREFIX or a local folder, or empty for no inbox",
            f"Only gs:// stores are supported; mount other storage as a folder and set {ENV_URI} to it.",
        )  # fmt: skip
    return uri, InboxParams(
        max_items=max_items, min_margin=min_margin, max_image_bytes=defaults.max_image_bytes
    )


def writer_from_env(model: str = "", env: Mapping[str, str] | None = None) -> InboxWriter | None:
    """An :class:`InboxWriter` when ``PLANETS_INBOX`` is set, else None (the inbox is off)."""
    uri, params = params_from_env(env)
    if not uri:
        return None
    inbox = Inbox(open_store(uri), params)
    log.info("Inbox on at %s (at most %d items, margin below %.2f)", uri, params.max_items, params.min_margin)
    return InboxWriter(inbox, model, params.queue_size)
