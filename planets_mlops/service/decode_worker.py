"""Heavy decodes in a child process that can really be stopped at a deadline.

A thread cannot be stopped in the middle of a libjpeg or zlib call: a decode bomb that
slips under the image limits would hold its thread (and its request's slot) until the
decoder returns, minutes later. So each decode thread of :class:`planets_mlops.service.
decoding.Decoder` hands its request to one :class:`DecodeProcess`, a Python child that
imports only Pillow, NumPy and the project's decoder, and waits for the answer until the
request's deadline. Past it, the child is killed (SIGKILL: nothing it holds needs a clean
exit) and a fresh one is started for the next request, so the slot is free at the
deadline, not when the decoder gives up.

The two sides speak length-prefixed frames over the child's stdin and stdout, never
pickle: the child parses attacker bytes, so the parent trusts nothing it sends back
beyond a JSON header and a float32 buffer of the announced shape.

Request: a JSON frame ``{"config": PreprocessConfig, "limits": ImageLimits, "sizes":
[bytes of each image]}``, then one frame with the images back to back. Answer: a JSON
frame ``{"shape": [n, size, size, channels]}`` and a frame of float32 values, or
``{"error": message, "refused": true|false}`` (``refused``: the image is unusable, a
400; otherwise the decoder broke, a 500).
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import struct
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

import numpy as np

from planets_mlops.errors import DataError
from planets_mlops.imaging import ImageLimits
from planets_mlops.preprocess import PreprocessConfig
from planets_mlops.service.inference import Cancelled, images_to_batch

# Nice value of the child: the worker's event loop (probes, light requests) gets the CPU first.
DECODE_NICENESS = 10
# The folder holding the planets_mlops package, put on the child's path: in a bento the
# package is not installed, only copied next to the service.
_ROOT = str(Path(__file__).resolve().parents[2])
_FRAME = struct.Struct(">Q")
# Largest frame either side accepts: far above any request (10 MiB of uploads by default).
MAX_FRAME = 1 << 31


def _write_frame(stream: IO[bytes], payload: bytes) -> None:
    stream.write(_FRAME.pack(len(payload)))
    stream.write(payload)


def _read_frame(stream: IO[bytes]) -> bytes | None:
    head = stream.read(_FRAME.size)
    if len(head) < _FRAME.size:
        return None
    (size,) = _FRAME.unpack(head)
    if size > MAX_FRAME:
        raise ValueError(f"frame of {size} bytes")
    payload = stream.read(size)
    return payload if len(payload) == size else None


def _answer(header: dict[str, Any], images: bytes) -> tuple[dict[str, Any], bytes]:
    config = PreprocessConfig(**header["config"])
    limits = ImageLimits(**header["limits"])
    blobs, offset = [], 0
    for size in header["sizes"]:
        blobs.append(images[offset : offset + int(size)])
        offset += int(size)
    try:
        batch = images_to_batch(blobs, config, limits=limits)
    except DataError as exc:
        return {"error": str(exc), "refused": True}, b""
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which answers 500
        return {"error": f"{type(exc).__name__}: {exc}", "refused": False}, b""
    batch = np.ascontiguousarray(batch, dtype=np.float32)
    return {"shape": list(batch.shape)}, batch.tobytes()


def main() -> None:
    """The child's loop: one request in, one answer out, until stdin closes."""
    with contextlib.suppress(OSError):
        os.nice(DECODE_NICENESS)
    # The frames own fd 1; anything printed by a library goes to stderr instead.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    source = os.fdopen(os.dup(0), "rb")
    while True:
        head = _read_frame(source)
        images = _read_frame(source) if head is not None else None
        if head is None or images is None:
            return
        header, values = _answer(json.loads(head), images)
        _write_frame(out, json.dumps(header).encode())
        _write_frame(out, values)
        out.flush()


class DecodeProcess:
    """One decode child, used by one thread at a time, killed and replaced at a deadline.

    Args:
        limits: The image limits the child enforces.
    """

    def __init__(self, limits: ImageLimits) -> None:
        self.limits = limits
        self._process: subprocess.Popen[bytes] | None = None
        self._buffer = b""

    @property
    def pid(self) -> int | None:
        """The running child's process id, or None when none runs."""
        return None if self._process is None else self._process.pid

    def start(self) -> None:
        """Start the child if none runs (Python start-up and imports: about half a second)."""
        if self._process is not None and self._process.poll() is None:
            return
        code = f"import sys; sys.path.insert(0, {_ROOT!r}); from {__name__} import main; main()"
        self._process = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True
        )
        self._buffer = b""

    def stop(self) -> None:
        """Kill the child now (its work is abandoned) and reap it."""
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(OSError):
            process.kill()
        for stream in (process.stdin, process.stdout):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)

    def _read(self, size: int, deadline: float) -> bytes:
        assert self._process is not None and self._process.stdout is not None
        fd = self._process.stdout.fileno()
        chunks, have = [self._buffer], len(self._buffer)
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while have < size:
                left = deadline - time.monotonic()
                if left <= 0 or not selector.select(timeout=left):
                    raise Cancelled
                chunk = os.read(fd, max(1 << 16, size - have))
                if not chunk:
                    raise DataError(
                        "Cannot decode the images: the decoder process ended while reading them "
                        f"(exit status {self._process.poll()}). Send a complete JPEG or PNG file."
                    )
                chunks.append(chunk)
                have += len(chunk)
        data = b"".join(chunks)
        self._buffer = data[size:]
        return data[:size]

    def _frame(self, deadline: float) -> bytes:
        (size,) = _FRAME.unpack(self._read(_FRAME.size, deadline))
        if size > MAX_FRAME:
            raise DataError(f"The decoder process answered a frame of {size} bytes; the images were refused.")
        return self._read(size, deadline)

    def run(self, blobs: list[bytes], config: PreprocessConfig, deadline: float) -> np.ndarray:
        """The model batch of ``blobs``, decoded by the child, or Cancelled at ``deadline``.

        Args:
            blobs: The image files.
            config: The model's preprocessing.
            deadline: ``time.monotonic()`` value past which the child is killed.

        Raises:
            Cancelled: the deadline passed (the child was killed; a new one starts next time).
            planets_mlops.errors.DataError: an image is refused, or the child died on it.
            RuntimeError: the decoder failed in a way no image should cause.
        """
        if time.monotonic() >= deadline:
            raise Cancelled
        self.start()
        assert self._process is not None and self._process.stdin is not None
        header = {"config": asdict(config), "limits": asdict(self.limits), "sizes": [len(b) for b in blobs]}
        try:
            try:
                _write_frame(self._process.stdin, json.dumps(header).encode())
                _write_frame(self._process.stdin, b"".join(blobs))
                self._process.stdin.flush()
            except BrokenPipeError as exc:
                raise DataError("Cannot decode the images: the decoder process is gone. Retry.") from exc
            answer = json.loads(self._frame(deadline))
            values = self._frame(deadline)
        except BaseException:
            # Killed on every way out but a complete answer: a half-read answer or a
            # stalled child must not serve the next request.
            self.stop()
            raise
        if "error" in answer:
            if answer.get("refused"):
                raise DataError(str(answer["error"]))
            raise RuntimeError(f"The image decoder failed: {answer['error']}")
        shape = tuple(int(n) for n in answer["shape"])
        expected = (len(blobs), config.image_size, config.image_size, config.channels)
        if shape != expected or len(values) != 4 * int(np.prod(shape)):
            self.stop()
            raise RuntimeError(f"The image decoder answered shape {shape}, not {expected}.")
        return np.frombuffer(values, dtype=np.float32).reshape(shape).copy()


if __name__ == "__main__":
    main()
