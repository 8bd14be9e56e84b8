"""Read image uploads from an HTTP request, with limits, into raw bytes.

Every way a request can be malformed ends here as an :class:`UploadError` carrying an
HTTP 4xx status and a message that says what to send instead; nothing raises into the
server. Only Starlette (a BentoML dependency) is needed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field

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
        parser = MultiPartParser(
            request.headers,
            _capped(request.stream(), max_bytes),
            max_files=max_images,
            max_fields=16,
        )
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
