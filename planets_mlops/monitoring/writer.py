"""The service's record writer: prediction records to the artifact store, off the request path.

The request path only appends what it already has (the model-input batch, the answers, the
guard's embeddings) to a bounded queue, in constant time, and never raises. One background
thread turns what has queued into :class:`~planets_mlops.monitoring.records.PredictionRecord`
rows (the features of many images in one NumPy pass, far cheaper per image than one call
per request) and writes them in batches:

- **Batched**: a batch is written when it holds ``batch_records`` records, when its first
  record is ``batch_age_s`` old, and at :meth:`RecordWriter.close` (the service's shutdown).
- **Partitioned**: one object per model version and hour
  (:func:`~planets_mlops.monitoring.records.partition`, named by
  :func:`~planets_mlops.monitoring.records.batch_name`); a batch spanning an hour boundary
  becomes one object in each hour.
- **Atomic**: objects are created whole or not at all by the stores of
  :mod:`planets_mlops.inbox` (temporary file + link locally, ``if_generation_match=0`` on
  ``gs://``).
- **Bounded**: the queue holds at most ``queue_images`` images (more are dropped and
  counted), a batch at most ``batch_records`` records, and no object exceeds
  :data:`~planets_mlops.monitoring.records.MAX_OBJECT_BYTES` (the readers' bound; a batch is
  split before that).
- **Never in the way**: a failing store costs the batch being written (counted as
  ``write_failed``, logged), never an exception in the request path.

What a crash can lose: a SIGKILL loses the batch not yet written (at most ``batch_records``
records, or ``batch_age_s`` seconds of them) plus the images still queued, which the
thread takes every ``DRAIN_S`` seconds. A SIGTERM loses nothing: the service's shutdown
hook closes the writer, which writes everything it holds.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np

from planets_mlops.knobs import MonitoringParams
from planets_mlops.monitoring.records import (
    MAX_OBJECT_BYTES,
    MAX_RECORD_BYTES,
    PredictionRecord,
    batch_name,
    make_records,
    partition,
    version_segment,
)

log = logging.getLogger(__name__)

# The thread takes the queue at least this often (and at once when DRAIN_IMAGES wait).
DRAIN_S = 0.1
DRAIN_IMAGES = 256
# Images whose features are computed in one NumPy pass, between two hand-backs of the GIL.
CHUNK_IMAGES = 32
_WARN_EVERY_S = 60.0


@dataclass(frozen=True)
class _Entry:
    tensors: np.ndarray
    answers: list[Mapping[str, Any]]
    embeddings: np.ndarray | None
    when: datetime


class RecordWriter:
    """Queues the service's predictions and writes them as record batches in one background thread.

    Args:
        root: The store: a local folder or ``gs://BUCKET/PREFIX``.
        model_version: The serving model's tag (the partition's first segment).
        params: Sampling share, batch size and age, queue bound (defaults: knobs.py).
        store_factory: ``location -> store`` (default :func:`planets_mlops.inbox.storage.open_store`).
        seed: Seed of the sampling draws (None: unseeded).

    Raises:
        InvalidParameterError: an empty model version.
    """

    def __init__(
        self,
        root: str,
        model_version: str,
        params: MonitoringParams | None = None,
        *,
        store_factory: Callable[[str], Any] | None = None,
        seed: int | None = None,
    ) -> None:
        version_segment(model_version)
        params = params or MonitoringParams()
        if store_factory is None:
            from planets_mlops.inbox.storage import open_store

            store_factory = open_store
        self.root = root.rstrip("/") or root
        self.model_version = model_version
        self.batch_records = params.batch_records
        self.batch_age_s = float(params.batch_age_s)
        self.queue_images = params.queue_images
        self.sample = float(params.sample)
        self._store_factory = store_factory
        self._stores: dict[str, Any] = {}
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._queue: deque[_Entry] = deque()
        self._queued_images = 0
        self._closing = False
        self._pending: list[tuple[datetime, bytes]] = []
        self._pending_since = 0.0
        self._flush_requested = 0
        self._flushed = 0
        self._last_warning = -_WARN_EVERY_S
        self.counts: Counter[str] = Counter()
        self.last_error = ""
        # CPU seconds the writer thread has used (its whole cost, besides the 2 us offers).
        self.cpu_s = 0.0
        self._thread = threading.Thread(target=self._run, name="planets-monitoring", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ request path

    def offer(
        self,
        tensors: Any,
        answers: Sequence[Mapping[str, Any]],
        embeddings: Any = None,
        when: datetime | None = None,
    ) -> int:
        """Queue one model batch and its answers for recording; never blocks, never raises.

        Args:
            tensors: The model-input batch ``(n, h, w, c)``.
            answers: The service's answers, in order.
            embeddings: The guard's embeddings ``(n, d)``, or None.
            when: The time of the answers (default now, UTC).

        Returns:
            How many images were queued (the rest were sampled out or dropped, and counted).
        """
        try:
            return self._offer(tensors, answers, embeddings, when)
        except Exception as exc:  # noqa: BLE001 - monitoring must never fail a request
            self._count("offer_failed", len(answers) if isinstance(answers, Sequence) else 1, exc)
            return 0

    def _offer(
        self, tensors: Any, answers: Sequence[Mapping[str, Any]], embeddings: Any, when: datetime | None
    ) -> int:
        n = len(answers)
        if n == 0:
            return 0
        if self.sample < 1.0:
            keep = [i for i in range(n) if self._random.random() < self.sample]
            if len(keep) < n:
                self.counts["sampled_out"] += n - len(keep)
                if not keep:
                    return 0
                tensors = np.asarray(tensors)[keep]
                answers = [answers[i] for i in keep]
                embeddings = None if embeddings is None else np.asarray(embeddings)[keep]
                n = len(keep)
        entry = _Entry(np.asarray(tensors), list(answers), embeddings, when or datetime.now(UTC))
        with self._lock:
            if self._closing or self._queued_images + n > self.queue_images:
                full = True
            else:
                full = False
                self._queue.append(entry)
                self._queued_images += n
                if self._queued_images >= DRAIN_IMAGES:
                    self._wake.notify()
        if full:
            self._count("dropped_queue_full", n)
            return 0
        self.counts["accepted"] += n
        return n

    # ------------------------------------------------------------------ thread

    def _run(self) -> None:
        # Not niced (unlike the decode threads): this thread holds the GIL while it works, and
        # a low priority would keep it descheduled holding it, stalling the event loop.
        while True:
            with self._wake:
                if not (self._closing or self._flush_requested > self._flushed):
                    timeout = DRAIN_S
                    if self._pending:
                        timeout = min(
                            timeout, max(0.0, self._pending_since + self.batch_age_s - time.monotonic())
                        )
                    if self._queued_images < DRAIN_IMAGES:
                        self._wake.wait(timeout)
                entries = list(self._queue)
                self._queue.clear()
                self._queued_images = 0
                closing, flush = self._closing, self._flush_requested
            try:
                self._take(entries)
                old = bool(self._pending) and time.monotonic() - self._pending_since >= self.batch_age_s
                if old or closing or flush > self._flushed:
                    self._write_pending()
            except Exception as exc:  # noqa: BLE001 - the thread must outlive any one failure
                self._count("write_failed", len(self._pending), exc)
                self._pending = []
            self.cpu_s = time.thread_time()
            with self._wake:
                self._flushed = flush
                self._wake.notify_all()
                if closing and not self._queue:
                    return

    def _take(self, entries: list[_Entry]) -> None:
        """Turn queued entries into pending lines; the features of all of them in one pass."""
        group: list[_Entry] = []
        size = 0
        for entry in entries:
            group.append(entry)
            size += len(entry.answers)
            if size >= CHUNK_IMAGES:
                self._take_group(group)
                group, size = [], 0
                # Give the GIL back between chunks: the event loop waits for it otherwise.
                time.sleep(0)
        if group:
            self._take_group(group)

    def _take_group(self, entries: list[_Entry]) -> None:
        try:
            made = self._records(entries)
        except Exception:  # noqa: BLE001 - one bad entry must not cost the others
            made = []
            for entry in entries:
                try:
                    made.extend(self._records([entry]))
                except Exception as exc:  # noqa: BLE001
                    self._count("invalid", len(entry.answers), exc)
        for when, record in made:
            line = record_line(record)
            if len(line) > MAX_RECORD_BYTES:
                self._count("invalid", 1, ValueError(f"a record of {len(line)} bytes"))
                continue
            if not self._pending:
                self._pending_since = time.monotonic()
            self._pending.append((when, line))
            if len(self._pending) >= self.batch_records:
                self._write_pending()

    def _records(self, entries: list[_Entry]) -> list[tuple[datetime, PredictionRecord]]:
        """Records of ``entries`` (one :func:`make_records` call when their shapes agree)."""
        times = [e.when.astimezone(UTC) for e in entries for _ in e.answers]
        embedded = {e.embeddings is not None for e in entries}
        shapes = {e.tensors.shape[1:] for e in entries}
        if len(entries) > 1 and (len(embedded) > 1 or len(shapes) > 1):
            return [pair for e in entries for pair in self._records([e])]
        tensors = entries[0].tensors if len(entries) == 1 else np.concatenate([e.tensors for e in entries])
        embeddings = None
        if True in embedded:
            parts = [np.asarray(e.embeddings) for e in entries]
            embeddings = parts[0] if len(parts) == 1 else np.concatenate(parts)
        answers = [a for e in entries for a in e.answers]
        made = make_records(tensors, answers, self.model_version, embeddings, entries[0].when)
        out = []
        for when, record in zip(times, made):
            stamp = when.isoformat(timespec="milliseconds")
            out.append((when, record if record.time == stamp else replace(record, time=stamp)))
        return out

    def _write_pending(self) -> None:
        pending, self._pending = self._pending, []
        by_hour: dict[str, list[tuple[datetime, bytes]]] = {}
        for when, line in pending:
            by_hour.setdefault(partition(self.root, self.model_version, when), []).append((when, line))
        for location, rows in by_hour.items():
            for chunk in _chunks(rows):
                try:
                    store = self._stores.get(location)
                    if store is None:
                        store = self._stores.setdefault(location, self._store_factory(location))
                    data = b"".join(line + b"\n" for _, line in chunk)
                    store.put_if_absent(batch_name(chunk[0][0]), data)
                except Exception as exc:  # noqa: BLE001 - a store failure costs this batch only
                    self._stores.pop(location, None)
                    self._count("write_failed", len(chunk), exc)
                    continue
                self.counts["written"] += len(chunk)
                self.counts["objects"] += 1
        if len(self._stores) > 4:  # one store per hour: keep the recent ones only
            for location in list(self._stores)[:-4]:
                del self._stores[location]

    # ------------------------------------------------------------------ counts and shutdown

    def _count(self, reason: str, n: int, exc: BaseException | None = None) -> None:
        self.counts[reason] += n
        if exc is not None:
            self.last_error = f"{reason}: {exc!r}"[:500]
        now = time.monotonic()
        if now - self._last_warning >= _WARN_EVERY_S:
            self._last_warning = now
            log.warning(
                "Monitoring at %s: %d record(s) %s (%s); totals %s",
                self.root, n, reason, self.last_error or "no error", dict(self.counts),
            )  # fmt: skip

    def stats(self) -> dict[str, Any]:
        """Counts for ``/metadata``: accepted, written, objects, and every loss by reason."""
        with self._lock:
            queued = self._queued_images
        return {
            "uri": self.root,
            "sample": self.sample,
            "batch_records": self.batch_records,
            "batch_age_s": self.batch_age_s,
            **{key: int(self.counts.get(key, 0)) for key in COUNTS},
            "queued": queued,
            "pending": len(self._pending),
            "writer_cpu_s": round(self.cpu_s, 3),
            "last_error": self.last_error,
        }

    def flush(self, timeout: float = 10.0) -> bool:
        """Write everything queued and pending now; False when ``timeout`` ran out first."""
        with self._wake:
            self._flush_requested += 1
            wanted = self._flush_requested
            self._wake.notify_all()
            return self._wake.wait_for(
                lambda: self._flushed >= wanted or not self._thread.is_alive(), timeout
            )

    def close(self, timeout: float = 10.0) -> bool:
        """Stop accepting, write everything held, stop the thread; False when ``timeout`` ran out."""
        with self._wake:
            self._closing = True
            self._wake.notify_all()
        self._thread.join(timeout)
        done = not self._thread.is_alive()
        log.info("Monitoring closed (%s): %s", "all written" if done else "timed out", self.stats())
        return done


COUNTS = ("accepted", "written", "objects", "sampled_out", "dropped_queue_full", "write_failed", "invalid",
          "offer_failed")  # fmt: skip


def record_line(record: PredictionRecord) -> bytes:
    """``record.to_line()``, byte for byte, without the deep copy of ``dataclasses.asdict``."""
    return json.dumps(
        {f.name: getattr(record, f.name) for f in _FIELDS}, separators=(",", ":"), allow_nan=False
    ).encode()


_FIELDS = fields(PredictionRecord)


def _chunks(rows: list[tuple[datetime, bytes]]) -> list[list[tuple[datetime, bytes]]]:
    """Split rows so that each object (lines and newlines) stays within :data:`MAX_OBJECT_BYTES`."""
    chunks: list[list[tuple[datetime, bytes]]] = [[]]
    size = 0
    for row in rows:
        if chunks[-1] and size + len(row[1]) + 1 > MAX_OBJECT_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(row)
        size += len(row[1]) + 1
    return chunks
