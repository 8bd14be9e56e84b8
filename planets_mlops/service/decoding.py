"""Decode one request's images: pixel budget first, then inline or in killable child processes.

The order, for every request:

1. Open every image and read its header (:func:`planets_mlops.service.inference.open_images`):
   format, mode, size and, for a JPEG, its scans, counted from its markers; nothing decoded. A
   refused file is a 400 (a JPEG of more than ``ImageLimits.max_scans`` scans included: a
   progressive scan bomb costs pixels x scans); more pixels in all than
   ``PLANETS_MAX_REQUEST_PIXELS`` is a 413, before a single pixel is decoded.
2. Light requests (at most ``PLANETS_INLINE_DECODE_PIXELS`` in all, every image of a
   single scan; a few 128x128 photos) are decoded on the event loop, from the files opened
   in step 1: about a millisecond, less than a hand-over would cost. A progressive or
   multi-scan JPEG is never light.
3. Heavy requests go to ``PLANETS_DECODE_THREADS`` threads, each of which hands its request
   to its own decode child process (:mod:`.decode_worker`, nice +10, so the event loop
   keeps answering ``/livez`` and light requests) and waits for it. At most
   ``PLANETS_DECODE_QUEUE`` heavy requests are accepted at once per worker, decoding or
   waiting; one more gets 429 with ``Retry-After``. A heavy request whose decoding has not
   finished ``PLANETS_DECODE_TIMEOUT_S`` after it arrived gets 429 too, and its child is
   killed at that moment (a thread could only stop between images, and one image can be a
   bomb), so its slot is free at the deadline. A fresh child starts for the next request.

Nothing here imports BentoML; :class:`Refused` carries the status and message the API
answers with.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
from PIL import ImageFile

from planets_mlops.errors import DataError
from planets_mlops.imaging import LIMITS, ImageHeader, ImageLimits
from planets_mlops.preprocess import PreprocessConfig
from planets_mlops.service.decode_worker import DecodeProcess
from planets_mlops.service.inference import Cancelled, close_images, open_images, opened_to_batch
from planets_mlops.service.settings import ServingSettings
from planets_mlops.service.uploads import UploadError


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
        limits: The image limits (the project's one set; tests may widen them).
    """

    def __init__(
        self, config: PreprocessConfig, settings: ServingSettings, limits: ImageLimits = LIMITS
    ) -> None:
        self.config = config
        self.settings = settings
        self.limits = limits
        self._pool = ThreadPoolExecutor(max_workers=settings.decode_threads, thread_name_prefix="decode")
        self._lock = threading.Lock()
        self._admitted = 0
        self._local = threading.local()
        self._processes: list[DecodeProcess] = []

    @property
    def processes(self) -> list[DecodeProcess]:
        """The decode children, one per decode thread that has had work."""
        with self._lock:
            return list(self._processes)

    def _process(self) -> DecodeProcess:
        """The calling decode thread's child (created on its first heavy request)."""
        process = getattr(self._local, "process", None)
        if process is None:
            process = self._local.process = DecodeProcess(self.limits)
            with self._lock:
                self._processes.append(process)
        return process

    def _decode(self, blobs: Sequence[bytes], deadline: float) -> np.ndarray:
        """On a decode thread: the batch from this thread's child, which is killed at ``deadline``."""
        return self._process().run(list(blobs), self.config, deadline)

    @property
    def admitted(self) -> int:
        """Heavy requests decoding or waiting for a decode thread now."""
        with self._lock:
            return self._admitted

    def _release(self, _: Future) -> None:
        with self._lock:
            self._admitted -= 1

    def _budget(self, blobs: Sequence[bytes]) -> list[tuple[ImageHeader, ImageFile.ImageFile]]:
        """Every blob's header, checked, and its file left open; within the pixel budget.

        The caller closes the files (:func:`.inference.close_images`); on a refusal they are
        closed here.
        """
        try:
            opened = open_images(blobs, self.limits)
        except DataError as exc:
            raise Refused(UploadError(400, str(exc))) from exc
        pixels = sum(header.pixels for header, _ in opened)
        limit = self.settings.max_request_pixels
        if pixels > limit:
            close_images(opened)
            raise Refused(
                UploadError(
                    413,
                    f"Too many pixels in one request: the {len(blobs)} image(s) declare {pixels:,} pixels "
                    f"in all; the limit is {limit:,} (PLANETS_MAX_REQUEST_PIXELS). Send fewer or smaller "
                    "images: the model sees each one at "
                    f"{self.config.image_size}x{self.config.image_size} pixels.",
                )
            )
        return opened

    def is_light(self, headers: Sequence[ImageHeader]) -> bool:
        """Whether a request of these images is decoded inline, on the event loop.

        Light: few pixels in all, and every image a single scan. A progressive JPEG costs
        pixels x scans, and even within ``ImageLimits.max_scans`` a small one can take far
        longer than its pixels say, so it always goes to a child that can be killed.
        """
        if any(h.progressive or h.scans > 1 for h in headers):
            return False
        return sum(h.pixels for h in headers) <= self.settings.inline_decode_pixels

    async def batch(self, blobs: Sequence[bytes]) -> np.ndarray:
        """The model batch of ``blobs``.

        Raises:
            Refused: 400 (a refused or corrupt image, naming its position), 413 (over the
                pixel budget) or 429 (too many heavy requests, or past the deadline).
        """
        arrived = time.monotonic()
        opened = self._budget(blobs)
        try:
            try:
                if self.is_light([header for header, _ in opened]):
                    # From the files the budget opened: one open and marker walk an image.
                    return opened_to_batch(opened, self.config)
            finally:
                close_images(opened)
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
        work = self._pool.submit(self._decode, blobs, deadline)
        work.add_done_callback(self._release)
        waiter = asyncio.wrap_future(work)
        done, _ = await asyncio.wait({waiter}, timeout=max(0.0, deadline - time.monotonic()))
        if not done:
            # The thread kills its child at the deadline too, and then frees the slot.
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
        """Stop the decode threads (pending work is dropped) and kill their children."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        for process in self.processes:
            process.stop()
