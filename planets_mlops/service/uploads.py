"""Read image uploads from an HTTP request, with limits, into raw bytes.

Every way a request can be malformed ends here as an :class:`UploadError` carrying an
HTTP 4xx status and a message that says what to send instead; nothing raises into the
server. Only Starlette (a BentoML dependency) is needed.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field

from python_multipart.multipart import parse_options_header
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

FIELD = "image"
HOW_TO = (
    f"Send the image as multipart/form-data in a file field named '{FIELD}' "
    f"(curl -F {FIELD}=@planet.jpg ...), or as the raw body with Content-Type image/jpeg "
    "or image/png."
)


@dataclass(frozen=True)
class UploadError:
    """Why a request was refused: an HTTP status and a message for the caller."""

    status: int
    message: str
    retry_after: int | None = None

    def body(self) -> dict[str, object]:
        """The JSON body of the refusal: ``{"error": message, "status": status}``."""
        """The JSON body of the refusal: ``{"error": message, "status": status}``."""
        return {"error": self.message, "status": self.status}

    def headers(self) -> dict[str, str]:
        """Extra response headers: ``Retry-After`` when the client should retry later."""
        return {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}


@dataclass
class Uploads:
    """The raw image files of one request, or the reason there are none."""

    images: list[bytes] = field(default_factory=list)
    error: UploadError | None = None


class _TooLarge(Exception):
    pass


async def _capped(stream: AsyncIterator[bytes], limit: int) -> AsyncGenerator[bytes, None]:
    """Pass the body through, stopping once it exceeds ``limit`` bytes (chunked uploads)."""
    seen = 0
    async for chunk in stream:
        seen += len(chunk)
        if seen > limit:
            raise _TooLarge
        yield chunk


def _too_large(limit: int) -> UploadError:
    return UploadError(
        413,
        f"Upload too large: the limit is {limit} bytes ({limit / 2**20:.1f} MiB). "
        "Send a smaller image; the model sees it at 32x32 anyway (the operator sets the "
        "limit with PLANETS_MAX_UPLOAD_BYTES).",
    )


# A multipart body that declares at most this many bytes is read whole, then parsed by
# plain_multipart (Starlette keeps a file part this small in memory too, so no more memory
# is held than before); a larger or chunked one streams into Starlette's parser.
PLAIN_BODY_BYTES = 1024 * 1024


# The only part headers of a plain body, printable ASCII (no stray CR or LF) throughout.
_PLAIN_HEADER = re.compile(rb"(?i:content-disposition|content-type):[\t\x20-\x7e]*")


def plain_multipart(content_type: str, body: bytes, max_images: int) -> list[bytes] | None:
    """The ``image`` files of a plain multipart body, or None when it is anything else.

    Plain: every part is a file field named ``image`` with only a ``Content-Disposition``
    (and a ``Content-Type``) header, the body is exactly the parts between the first
    boundary and the closing one, no part holds the boundary, and there are at most
    ``max_images`` parts. What curl, httpx, browsers and the benchmark send. Then the files
    are what Starlette's parser gives, to the byte, for a fifth of its CPU (12 against
    38 us); for anything else (None) the caller runs Starlette's parser on the same bytes,
    which answers it as before (tests/pure/test_uploads.py compares the two on mutated
    bodies).
    """
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary or b"charset" in params:
        return None
    first, closing = b"--" + boundary + b"\r\n", b"\r\n--" + boundary + b"--\r\n"
    if len(body) < len(first) + len(closing) or not body.startswith(first) or not body.endswith(closing):
        return None
    delimiter = b"\r\n--" + boundary
    parts = body[len(first) : len(body) - len(closing)].split(delimiter + b"\r\n")
    if len(parts) > max_images:
        return None
    images = []
    for part in parts:
        if delimiter in part:
            return None
        head, blank, data = part.partition(b"\r\n\r\n")
        if not blank:
            return None
        named = False
        for line in head.split(b"\r\n"):
            if _PLAIN_HEADER.fullmatch(line) is None:
                return None
            key, _, value = line.partition(b":")
            if key.lower() == b"content-disposition":
                kind, options = parse_options_header(value)
                if (
                    named
                    or kind != b"form-data"
                    or options.get(b"name") != FIELD.encode()
                    or b"filename" not in options
                ):
                    return None
                named = True
        if not named:
            return None
        images.append(data)
    return images


async def _replay(body: bytes) -> AsyncGenerator[bytes, None]:
    yield body


class UploadGate:
    """Counts the request bodies one worker is receiving, to bound what they spool.

    Starlette spools each multipart file above 1 MiB to a temporary file; with at most
    ``limit`` bodies of at most ``max_upload_bytes`` in flight, and each given
    ``body_timeout_s`` to arrive, stalled uploads cannot fill ``/tmp``.

    Args:
        limit: Most bodies in flight at once.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0

    def enter(self) -> bool:
        """Take a slot for one body; False when all ``limit`` slots are taken."""
        if self.in_flight >= self.limit:
            return False
        self.in_flight += 1
        return True

    def leave(self) -> None:
        """Give the slot back once the body is read (or refused)."""
        self.in_flight -= 1


async def read_uploads(
    request: Request,
    max_bytes: int,
    max_images: int,
    *,
    body_timeout_s: float | None = None,
    gate: UploadGate | None = None,
) -> Uploads:
    """Collect the uploaded image files of ``request``.

    Accepts ``multipart/form-data`` with one or more file fields named ``image`` (at most
    ``max_images``), or a raw ``image/*`` / ``application/octet-stream`` body (one image).
    The bytes are not decoded here; :mod:`planets_mlops.service.decoding` does that.

    Args:
        request: The incoming request; its body is consumed.
        max_bytes: Largest body accepted, checked against Content-Length before reading
            and while streaming (chunked uploads).
        max_images: Most image fields accepted in one request.
        body_timeout_s: The whole body must arrive within this many seconds (None: no limit).
        gate: Bodies in flight in this worker; when it is full the request is refused
            before its body is read.

    Returns:
        The raw files, or an :class:`UploadError` (400, 408, 413, 415 or 429) saying what to fix.
    """
    if gate is not None and not gate.enter():
        return Uploads(
            error=UploadError(
                429,
                f"Busy: {gate.limit} uploads are arriving at this worker (PLANETS_UPLOADS_IN_FLIGHT). "
                "Retry in a second.",
                retry_after=1,
            )
        )
    try:
        if body_timeout_s is None:
            return await _read_uploads(request, max_bytes, max_images)
        async with asyncio.timeout(body_timeout_s):
            return await _read_uploads(request, max_bytes, max_images)
    except TimeoutError:
        return Uploads(
            error=UploadError(
                408,
                f"Upload not received in time: the whole body must arrive within {body_timeout_s:g} s "
                "(PLANETS_BODY_TIMEOUT_S). Send it at once, or on a faster link.",
            )
        )
    finally:
        if gate is not None:
            gate.leave()


async def _read_uploads(request: Request, max_bytes: int, max_images: int) -> Uploads:
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";")[0].strip().lower()
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > max_bytes:
                return Uploads(error=_too_large(max_bytes))
        except ValueError:
            return Uploads(error=UploadError(400, f"Invalid Content-Length header {declared!r}."))
    try:
        if media_type.startswith("image/") or media_type == "application/octet-stream":
            body = bytearray()
            async for chunk in _capped(request.stream(), max_bytes):
                body += chunk
            if not body:
                return Uploads(error=UploadError(400, f"Empty body: no image was sent. {HOW_TO}"))
            return Uploads(images=[bytes(body)])
        if media_type != "multipart/form-data":
            return Uploads(
                error=UploadError(415, f"Unsupported Content-Type {content_type or '(none)'!r}. {HOW_TO}")
            )
        stream = _capped(request.stream(), max_bytes)
        if declared is not None and int(declared) <= PLAIN_BODY_BYTES:
            whole = bytearray()
            async for chunk in stream:
                whole += chunk
            images = plain_multipart(content_type, bytes(whole), max_images)
            if images is not None:
                return Uploads(images=images)
            stream = _replay(bytes(whole))
        parser = MultiPartParser(request.headers, stream, max_files=max_images, max_fields=16)
        try:
            form = await parser.parse()
        except BaseException:
            # A timeout or a cut connection: free the spooled parts now, not at GC time.
            for part in getattr(parser, "_files_to_close_on_error", ()):
                part.close()
            raise
    except _TooLarge:
        return Uploads(error=_too_large(max_bytes))
    except MultiPartException as exc:
        if "too many files" in str(exc).lower():
            hint = "; use /predict_batch for several" if max_images == 1 else ""
            return Uploads(
                error=UploadError(
                    400, f"Too many images: this route takes at most {max_images} per request{hint}."
                )
            )
        return Uploads(error=UploadError(400, f"Malformed multipart body: {str(exc).rstrip('.')}. {HOW_TO}"))
    try:
        values = form.getlist(FIELD)
        if not values:
            fields = sorted(set(form.keys())) or "none"
            return Uploads(
                error=UploadError(400, f"No field '{FIELD}' in the form (fields sent: {fields}). {HOW_TO}")
            )
        images = []
        for value in values:
            if not isinstance(value, UploadFile):
                return Uploads(
                    error=UploadError(400, f"Field '{FIELD}' is a text value, not a file. {HOW_TO}")
                )
            images.append(await value.read())
        return Uploads(images=images)
    finally:
        await form.close()
