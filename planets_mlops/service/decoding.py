"""Decode one request's images: pixel budget first, then inline or on bounded threads with a deadline.

The order, for every request:

1. Read every image's header (:func:`planets_mlops.service.inference.read_headers`): format,
   mode and size, nothing decoded. A refused file is a 400; more pixels in all than
   ``PLANETS_MAX_REQUEST_PIXELS`` is a 413, before a single pixel is decoded.
2. Light requests (at most ``PLANETS_INLINE_DECODE_PIXELS`` in all; a few 128x128 photos)
   are decoded on the event loop: about a millisecond, less than a thread hop would cost.
3. Heavy requests go to ``PLANETS_DECODE_THREADS`` threads (Pillow and NumPy release the
   GIL while they work, so the event loop keeps answering ``/livez`` and light requests;
   the threads run at a lower priority, nice +10, so the event loop gets the CPU first).
   At most ``PLANETS_DECODE_QUEUE`` heavy requests are accepted at once per worker,
   decoding or waiting; one more gets 429 with ``Retry-After``. A heavy request whose
   decoding has not finished ``PLANETS_DECODE_TIMEOUT_S`` after it arrived gets 429 too,
   and its thread stops after the image in progress (each image is bounded by the image
   limits). A request's slot is freed when its thread work ends, not when it was answered,
   so abandoned work still counts against the queue.

Nothing here imports BentoML; :class:`Refused` carries the status and message the API
answers with.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from planets_mlops.errors import DataError
from planets_mlops.preprocess import PreprocessConfig
from planets_mlops.service.inference import Cancelled, images_to_batch, read_headers
from planets_mlops.service.settings import ServingSettings
from planets_mlops.service.uploads import UploadError

# Nice value of the decode threads: on Linux each thread can have its own, so the event
# loop (probes, light requests) gets the CPU before heavy decodes do.
DECODE_NICENESS = 10


def _lower_priority() -> None:
    """Initializer of a decode thread: lower its own scheduling priority (Linux; elsewhere a no-op)."""
    with contextlib.suppress(AttributeError, OSError, PermissionError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), DECODE_NICENESS)


class Refused(Exception):
    """A request the service answers with a 4xx instead of a prediction.

    Args:
        error: The status, message and ``Retry-After`` of the answer.
    """

    def __init__(self, error: UploadError) -> None:
        super().__init__(error.message)
        self.error = error


class Decoder:
    """Turns the image files of one request into a model batch, within the serving limits.

    One per worker process; its methods run on the worker's event loop.

    Args:
        config: The model's preprocessing.
        settings: The serving limits (pixel budget, inline threshold, threads, queue, deadline).
    """

    def __init__(self, config: PreprocessConfig, settings: ServingSettings) -> None:
        self.config = config
        self.settings = settings
        self._pool = ThreadPoolExecutor(
            max_workers=settings.decode_threads, thread_name_prefix="decode", initializer=_lower_priority
        )
        self._lock = threading.Lock()
        self._admitted = 0

    @property
    def admitted(self) -> int:
        """Heavy requests decoding or waiting for a decode thread now."""
        with self._lock:
            return self._admitted

    def _release(self, _: Future) -> None:
        with self._lock:
            self._admitted -= 1

    def _budget(self, blobs: Sequence[bytes]) -> int:
        try:
            headers = read_headers(blobs)
        except DataError as exc:
            raise Refused(UploadError(400, str(exc))) from exc
        pixels = sum(h.pixels for h in headers)
        limit = self.settings.max_request_pixels
        if pixels > limit:
            raise Refused(
                UploadError(
                    413,
                    f"Too many pixels in one request: the {len(blobs)} image(s) declare {pixels:,} pixels "
                    f"in all; the limit is {limit:,} (PLANETS_MAX_REQUEST_PIXELS). Send fewer or smaller "
                    "images: the model sees each one at "
                    f"{self.config.image_size}x{self.config.image_size} pixels.",
                )
            )
        return pixels

    async def batch(self, blobs: Sequence[bytes]) -> np.ndarray:
        """The model batch of ``blobs``.

        Raises:
            Refused: 400 (a refused or corrupt image, naming its position), 413 (over the
                pixel budget) or 429 (too many heavy requests, or past the deadline).
        """
        arrived = time.monotonic()
        pixels = self._budget(blobs)
        try:
            if pixels <= self.settings.inline_decode_pixels:
                return images_to_batch(blobs, self.config)
            return await self._on_threads(blobs, arrived)
        except DataError as exc:
            raise Refused(UploadError(400, str(exc))) from exc

    async def _on_threads(self, blobs: Sequence[bytes], arrived: float) -> np.ndarray:
        settings = self.settings
        with self._lock:
            if self._admitted >= settings.decode_queue:
                busy = True
            else:
                busy = False
                self._admitted += 1
        if busy:
            raise Refused(
                UploadError(
                    429,
                    f"Busy: {settings.decode_queue} large requests are being decoded by this worker "
                    "(PLANETS_DECODE_QUEUE). Retry in a second, or send smaller images.",
                    retry_after=1,
                )
            )
        deadline = arrived + settings.decode_timeout_s
        stop = threading.Event()

        def cancelled() -> bool:
            return stop.is_set() or time.monotonic() > deadline

        work = self._pool.submit(images_to_batch, blobs, self.config, cancelled)
        work.add_done_callback(self._release)
        waiter = asyncio.wrap_future(work)
        done, _ = await asyncio.wait({waiter}, timeout=max(0.0, deadline - time.monotonic()))
        if not done:
            stop.set()
            # Retrieve the outcome later, so that no "exception never retrieved" is logged.
            waiter.add_done_callback(lambda f: f.cancelled() or f.exception())
            raise Refused(self._late(settings))
        try:
            return waiter.result()
        except Cancelled as exc:
            raise Refused(self._late(settings)) from exc

    @staticmethod
    def _late(settings: ServingSettings) -> UploadError:
        return UploadError(
            429,
            f"Decoding did not finish within {settings.decode_timeout_s:g} s (PLANETS_DECODE_TIMEOUT_S): "
            "the worker is busy with large images. Retry later, or send smaller images.",
            retry_after=2,
        )

    def close(self) -> None:
        """Stop the decode threads (pending work is dropped)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
