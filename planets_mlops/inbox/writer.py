"""Keeping items off the request path: a bounded queue and one background thread.

And the service's settings of the inbox, read from ``PLANETS_INBOX*``.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from planets_mlops.errors import InvalidParameterError
from planets_mlops.inbox.core import Inbox
from planets_mlops.inbox.scores import (
    triage,
)
from planets_mlops.inbox.storage import open_store
from planets_mlops.knobs import InboxParams

log = logging.getLogger(__name__)


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
