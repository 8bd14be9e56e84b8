"""Prediction records: what the service saw and answered, one JSON object per image.

A record (:class:`PredictionRecord`, format :data:`FORMAT`) holds the time, the model
version, the scalar :data:`~planets_mlops.monitoring.features.FEATURES` of the model-input
tensor, the projected embedding, the prediction, its top probability and the guard's
verdict. Never image bytes.

Layout in the store (a local folder or ``gs://BUCKET/PREFIX``): records are batched into
JSON Lines objects, one partition per model version and hour (UTC)::

    <root>/<model version>/<YYYY-MM-DD>/<HH>/<YYYYmmddTHHMMSSZ>-<uuid>.jsonl

The version segment is made path-safe by :func:`version_segment`. A batch object is
created whole or not at all (the stores of :mod:`planets_mlops.inbox`), so a reader sees
complete batches only. Reading is bounded (:func:`read_window`): the hours of the window,
the size of each object, the objects read and the records kept (a uniform sample of the
whole window when it holds more); a malformed line or object is skipped and counted by
reason, never trusted.
"""

from __future__ import annotations

import json
import math
import random
import re
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from planets_mlops import safejson
from planets_mlops.errors import DataError, InvalidParameterError, NotFoundError
from planets_mlops.monitoring.features import FEATURES, PROJECTION_DIM, image_features, project_embeddings

FORMAT = "planets-predictions/1"
SUFFIX = ".jsonl"
MAX_RECORD_BYTES = 16 * 1024
MAX_OBJECT_BYTES = 8 * 1024 * 1024
MAX_WINDOW_HOURS = 24 * 62
# Objects one window read opens at most; a window holding more is read at evenly spaced
# objects across its whole span (at the default 60 s batches, 20,000 objects are 2 weeks).
MAX_WINDOW_OBJECTS = 20_000
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class PredictionRecord:
    """One served image: features, projected embedding, answer and guard verdict."""

    time: str
    model_version: str
    features: dict[str, float]
    embedding: list[float]
    prediction: str | None
    closest_class: str
    score: float
    known_score: float | None = None
    recognised: bool | None = None
    format: str = field(default=FORMAT)

    def to_line(self) -> bytes:
        """The record as one JSON line (no newline)."""
        return json.dumps(asdict(self), separators=(",", ":"), allow_nan=False).encode()

    @classmethod
    def from_dict(cls, data: Any) -> PredictionRecord:
        """A record from parsed JSON, checked field by field.

        Raises:
            planets_mlops.errors.DataError: a field is missing, of the wrong type, not finite,
                or the features / embedding do not match this version of the suite.
        """
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise DataError(f"not a {FORMAT} record")
        features = data.get("features")
        if not isinstance(features, dict) or set(features) != set(FEATURES):
            raise DataError("record features do not match the suite's feature list")
        embedding = data.get("embedding")
        if not isinstance(embedding, list) or len(embedding) not in (0, PROJECTION_DIM):
            raise DataError(f"record embedding must hold 0 or {PROJECTION_DIM} numbers")
        numbers = [*features.values(), *embedding, data.get("score")]
        if data.get("known_score") is not None:
            numbers.append(data["known_score"])
        if not all(_finite(value) for value in numbers):
            raise DataError("record holds a non-numeric or non-finite value")
        for name in ("time", "model_version", "closest_class"):
            if not isinstance(data.get(name), str) or not data[name]:
                raise DataError(f"record field {name!r} must be a non-empty string")
        if data.get("prediction") is not None and not isinstance(data["prediction"], str):
            raise DataError("record prediction must be a string or null")
        if data.get("recognised") is not None and not isinstance(data["recognised"], bool):
            raise DataError("record recognised must be true, false or null")
        try:
            parse_time(data["time"])
        except DataError as exc:
            raise DataError("record time is not an ISO-8601 time within the calendar") from exc
        return cls(
            time=data["time"],
            model_version=data["model_version"],
            features={name: float(features[name]) for name in FEATURES},
            embedding=[float(value) for value in embedding],
            prediction=data.get("prediction"),
            closest_class=data["closest_class"],
            score=float(data["score"]),
            known_score=None if data.get("known_score") is None else float(data["known_score"]),
            recognised=data.get("recognised"),
        )


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_json_file(path: Path, max_bytes: int, what: str, allow_nan: bool = False) -> Any:
    """The parsed JSON of the file ``path`` (read only when at most ``max_bytes``), within bounds.

    Parsed by :func:`planets_mlops.safejson.loads`: nesting and numbers are bounded.

    Raises:
        planets_mlops.errors.DataError: the file is larger than ``max_bytes``, not JSON, nested
            too deep or holds a number out of range (the message names ``path`` and ``what``
            it should have been).
    """
    if path.stat().st_size > max_bytes:
        raise DataError(f"{path} is larger than {max_bytes} bytes; not {what}.")
    try:
        return safejson.loads(path.read_bytes(), allow_nan=allow_nan)
    except safejson.JsonError as exc:
        raise DataError(f"{path} is not {what}: {exc}") from exc


def parse_time(text: str) -> datetime:
    """An ISO-8601 time as an aware UTC datetime (a naive one is taken as UTC).

    Raises:
        planets_mlops.errors.DataError: not an ISO-8601 time.
    """
    try:
        when = datetime.fromisoformat(text)
        return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    except (TypeError, ValueError, OverflowError) as exc:
        # OverflowError: a time at the edge of the calendar whose offset leaves it.
        raise DataError(f"{str(text)[:40]!r} is not an ISO-8601 time within the calendar") from exc


def make_records(
    tensors: Any,
    answers: Sequence[Mapping[str, Any]],
    model_version: str,
    embeddings: Any = None,
    when: datetime | None = None,
) -> list[PredictionRecord]:
    """One record per image of a model batch and the service's answers for it.

    Args:
        tensors: The model-input batch ``(n, h, w, c)``.
        answers: The answers of :func:`planets_mlops.model_folder.answers`, in order.
        model_version: The model (bento model tag) that answered.
        embeddings: The guard's embeddings ``(n, d)``, or None (no guard: empty embedding).
        when: The time of the answers (default: now, UTC).
    """
    features = image_features(tensors)
    if len(answers) != len(features):
        raise DataError(f"{len(answers)} answers for {len(features)} images")
    projected = project_embeddings(embeddings) if embeddings is not None else None
    stamp = (when or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="milliseconds")
    records = []
    for row, answer in enumerate(answers):
        probabilities = answer.get("probabilities") or {}
        records.append(
            PredictionRecord(
                time=stamp,
                model_version=model_version,
                features=dict(zip(FEATURES, features[row].tolist())),
                embedding=[] if projected is None else projected[row].tolist(),
                prediction=answer.get("prediction"),
                closest_class=str(answer["closest_class"]),
                score=float(max(probabilities.values())) if probabilities else 0.0,
                known_score=answer.get("known_score"),
                recognised=answer.get("recognised"),
            )
        )
    return records


def version_segment(model_version: str) -> str:
    """``model_version`` as one safe path segment (``planets-classifier:abc`` -> ``planets-classifier_abc``).

    Raises:
        planets_mlops.errors.InvalidParameterError: empty, or only dots.
    """
    segment = _SAFE.sub("_", model_version or "")
    if not segment.strip("."):
        raise InvalidParameterError(
            "model_version", model_version, "a model tag such as planets-classifier:abc123",
            "Records are partitioned by model version; pass the tag the service reports at /metadata.",
        )  # fmt: skip
    return segment


def partition(root: str, model_version: str, when: datetime) -> str:
    """The partition (a store location) of ``model_version``'s records of the hour of ``when``."""
    hour = when.astimezone(UTC)
    return f"{root.rstrip('/')}/{version_segment(model_version)}/{hour:%Y-%m-%d}/{hour:%H}"


def recorded_versions(root: str, client: Any = None, limit: int = 1000) -> list[str]:
    """The version segments under ``root`` (:func:`version_segment` folders), sorted; at most ``limit``.

    What a reader asks when a window holds no record at all: is ``root`` the records
    location (a typo reads as an empty window forever), and does it hold the version?

    Raises:
        planets_mlops.errors.NotFoundError: nothing at all under ``root`` (a missing folder,
            prefix or bucket).
    """
    if root.startswith("gs://"):
        from planets_mlops.storage import make_client, parse_gs_uri

        bucket, prefix = parse_gs_uri(root.rstrip("/") + "/x")
        prefix = prefix[:-1]
        client = client or make_client()
        try:
            blobs = client.list_blobs(client.bucket(bucket), prefix=prefix, delimiter="/", max_results=limit)
            for _ in blobs:  # the prefixes (version folders) are known once the pages are read
                pass
            found = sorted(p[len(prefix) :].rstrip("/") for p in blobs.prefixes)
        except Exception as exc:  # noqa: BLE001 - a missing bucket is the same finding as an empty one
            if type(exc).__name__ != "NotFound":
                raise
            found = []
    else:
        folder = Path(root)
        found = sorted(e.name for e in folder.iterdir() if e.is_dir())[:limit] if folder.is_dir() else []
    if not found:
        raise NotFoundError(
            f"No prediction records at all under records_uri={root!r}: not one model version's "
            "folder. Check the location (a typo reads as an empty window forever) and that the "
            "service writes there (serving_monitoring_uri, PLANETS_MONITORING_URI)."
        )
    return found


def batch_name(first: datetime) -> str:
    """A unique object name for a batch whose first record is of time ``first``."""
    return f"{first.astimezone(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex}{SUFFIX}"


def encode_batch(records: Sequence[PredictionRecord]) -> bytes:
    """Records as JSON Lines."""
    return b"".join(record.to_line() + b"\n" for record in records)


def decode_batch(data: bytes, skipped: Counter | None = None) -> list[PredictionRecord]:
    """The valid records of one batch object; each bad line is counted in ``skipped`` by reason."""
    skipped = Counter() if skipped is None else skipped
    records = []
    for line in data.splitlines():
        if not line.strip():
            continue
        if len(line) > MAX_RECORD_BYTES:
            skipped["record too large"] += 1
            continue
        try:
            records.append(PredictionRecord.from_dict(safejson.loads(line)))
        except safejson.JsonError as exc:
            skipped[exc.reason] += 1
        except DataError as exc:
            skipped[str(exc)] += 1
    return records


def hours(start: datetime, end: datetime) -> list[datetime]:
    """The UTC hours that ``[start, end)`` touches, oldest first.

    Raises:
        planets_mlops.errors.InvalidParameterError: ``end`` not after ``start``, or a window
            longer than :data:`MAX_WINDOW_HOURS`.
    """
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if end <= start:
        raise InvalidParameterError("window", f"{start.isoformat()} .. {end.isoformat()}",
                                    "an end after the start", "Swap them, or widen the window.")  # fmt: skip
    first = start.replace(minute=0, second=0, microsecond=0)
    count = math.ceil((end - first) / timedelta(hours=1))
    if count > MAX_WINDOW_HOURS:
        raise InvalidParameterError("window", f"{count} hours", f"at most {MAX_WINDOW_HOURS} hours",
                                    "Monitor a shorter window; windows are read whole.")  # fmt: skip
    return [first + timedelta(hours=offset) for offset in range(count)]


@dataclass(frozen=True)
class Window:
    """The records of one model version in ``[start, end)``, and what was skipped.

    Attributes:
        records: The records kept: all of the window's, or a uniform sample of them.
        objects: Batch objects read.
        skipped: Lines and objects not used, by reason.
        truncated: The window held more records than were kept (``records`` is a uniform
            sample of all ``seen`` of them, across the whole window).
        seen: Records of the window read (kept or not).
    """

    records: list[PredictionRecord]
    objects: int
    skipped: dict[str, int]
    truncated: bool
    seen: int = -1

    def features(self) -> np.ndarray:
        """The records' features, ``(records, len(FEATURES))``."""
        return np.array([[r.features[name] for name in FEATURES] for r in self.records], dtype=np.float64)

    def embeddings(self) -> np.ndarray:
        """The records' projected embeddings, ``(records, PROJECTION_DIM)`` (records without one left out)."""
        rows = [r.embedding for r in self.records if r.embedding]
        return np.array(rows, dtype=np.float64).reshape(len(rows), PROJECTION_DIM)


def _spread(items: list[Any], count: int) -> list[Any]:
    """``count`` of ``items``, evenly spaced from the first to the last (all when fewer)."""
    if len(items) <= count:
        return items
    step = (len(items) - 1) / max(1, count - 1)
    return [items[round(i * step)] for i in range(count)]


def read_window(
    root: str,
    model_version: str,
    start: datetime,
    end: datetime,
    max_records: int = 200_000,
    client: Any = None,
) -> Window:
    """The records of ``model_version`` with a time in ``[start, end)``, sampled across the whole window.

    Every hour of the window is listed first; every object is then read (at most
    :data:`MAX_WINDOW_OBJECTS`, evenly spaced across the window when it holds more, and
    each of at most :data:`MAX_OBJECT_BYTES`), and at most ``max_records`` records are
    kept: a uniform random sample of all the window's records (reservoir sampling, seeded
    by the window, so a rerun keeps the same ones). Memory is bounded by ``max_records``;
    a busy window is never judged on its first hours alone (``truncated`` says a sample
    was taken, ``seen`` how many records it was taken from). A larger or malformed object
    is skipped and counted.
    """
    from planets_mlops.inbox.storage import open_store

    kept: list[PredictionRecord] = []
    skipped: Counter = Counter()
    objects = seen = 0
    start_utc, end_utc = start.astimezone(UTC), end.astimezone(UTC)
    listed: list[tuple[Any, str]] = []
    for hour in hours(start_utc, end_utc):
        store = open_store(partition(root, model_version, hour), client)
        # Names start with the time of their first record: sorted is oldest first.
        listed += [(store, name) for name in sorted(store.list_names(SUFFIX))]
    chosen = _spread(listed, MAX_WINDOW_OBJECTS)
    if len(chosen) < len(listed):
        skipped[f"objects not read (over {MAX_WINDOW_OBJECTS}, read evenly spaced)"] += len(listed) - len(
            chosen
        )
    sampler = random.Random(f"{model_version}|{start_utc.isoformat()}|{end_utc.isoformat()}")
    for store, name in chosen:
        try:
            data = store.get(name, MAX_OBJECT_BYTES)
        except NotFoundError:
            skipped["object gone while reading"] += 1
            continue
        except DataError:
            skipped["object too large"] += 1
            continue
        objects += 1
        for record in decode_batch(data, skipped):
            if not start_utc <= parse_time(record.time) < end_utc:
                continue
            seen += 1
            if len(kept) < max_records:
                kept.append(record)
            else:
                slot = sampler.randrange(seen)
                if slot < max_records:
                    kept[slot] = record
    return Window(kept, objects, dict(skipped), truncated=seen > len(kept), seen=seen)
