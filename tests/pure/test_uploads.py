"""The service's upload reading: the plain-multipart parser against Starlette's, and read_uploads."""

from __future__ import annotations

import asyncio
import random

import pytest
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from planets_mlops.service.uploads import plain_multipart, read_uploads

FILE = b'Content-Disposition: form-data; name="image"; filename="a.jpg"\r\nContent-Type: image/jpeg'
# Data that looks like the boundary without being one, and every byte value.
DATA = bytes(range(256)) * 3 + b"\r\n-\r\n--xy--xyz"
CT = "multipart/form-data; boundary=xyz"


def body(parts: list[tuple[bytes, bytes]], end: bytes = b"\r\n--xyz--\r\n") -> bytes:
    out = b""
    for i, (head, data) in enumerate(parts):
        out += b"--xyz\r\n" + head + b"\r\n\r\n" + data + (b"\r\n" if i < len(parts) - 1 else b"")
    return out + end


def starlette(content_type: str, data: bytes, max_images: int) -> object:
    """What Starlette's parser makes of ``data``: the ``image`` files, or how it differs."""

    async def stream():
        yield data

    async def run() -> object:
        parser = MultiPartParser(
            Headers({"content-type": content_type}), stream(), max_files=max_images, max_fields=16
        )
        try:
            form = await parser.parse()
        except MultiPartException as exc:
            return ("error", str(exc))
        try:
            values = form.getlist("image")
            if set(form.keys()) != {"image"} or not all(isinstance(v, UploadFile) for v in values):
                return ("fields", sorted(form.keys()))
            return [await v.read() for v in values]
        finally:
            await form.close()

    return asyncio.run(run())


CASES = {
    "one": (CT, body([(FILE, DATA)]), [DATA]),
    "two": (CT, body([(FILE, DATA), (FILE, b"abc")]), [DATA, b"abc"]),
    "quoted boundary": ('multipart/form-data; boundary="xyz"', body([(FILE, DATA)]), [DATA]),
    "no content type": (CT, body([(FILE.split(b"\r\n")[0], DATA)]), [DATA]),
    "empty file": (CT, body([(FILE, b"")]), [b""]),
    "lower-case header, no space": (CT, body([(FILE.lower().replace(b": ", b":"), DATA)]), [DATA]),
    "text field": (CT, body([(b'Content-Disposition: form-data; name="image"', b"abc")]), None),
    "other name": (CT, body([(b'Content-Disposition: form-data; name="file"; filename="a"', b"abc")]), None),
    "more than max_images": (CT, body([(FILE, DATA)] * 3), None),
    "no closing line break": (CT, body([(FILE, DATA)], end=b"\r\n--xyz--"), None),
    "epilogue": (CT, body([(FILE, DATA)], end=b"\r\n--xyz--\r\nmore"), None),
    "preamble": (CT, b"before\r\n" + body([(FILE, DATA)]), None),
    "another header": (CT, body([(FILE + b"\r\nX-Other: 1", DATA)]), None),
    "two dispositions": (
        CT,
        body([(FILE + b'\r\nContent-Disposition: form-data; name="x"; filename="b"', DATA)]),
        None,
    ),
    "no boundary": ("multipart/form-data", body([(FILE, DATA)]), None),
    "charset": (CT + "; charset=latin-1", body([(FILE, DATA)]), None),
    "attachment": (CT, body([(FILE.replace(b"form-data", b"attachment"), DATA)]), None),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_plain_multipart_reads_what_starlette_reads_or_leaves_it_to_starlette(case: str) -> None:
    content_type, data, expected = CASES[case]
    assert plain_multipart(content_type, data, 2) == expected
    if expected is not None:
        assert starlette(content_type, data, 2) == expected


def test_plain_multipart_never_disagrees_with_starlette_on_damaged_bodies() -> None:
    """Bytes changed, removed or inserted (boundaries, line breaks, colons...) at random."""
    rng = random.Random(27)
    accepted = 0
    for _ in range(1500):
        data = bytearray(rng.choice([body([(FILE, DATA)]), body([(FILE, DATA), (FILE, b"abc")])]))
        for _ in range(rng.randint(1, 3)):
            where, what = rng.randrange(len(data)), rng.random()
            if what < 0.4:
                data[where] = rng.choice(b'\r\n-xyz:;=" abc\x00')
            elif what < 0.7:
                del data[where : where + rng.randint(1, 4)]
            else:
                data[where:where] = rng.choice(
                    [b"\r\n", b"--xyz", b"\r\n--xyz\r\n", b": ", b"\r\n\r\n", b"--"]
                )
        plain = plain_multipart(CT, bytes(data), 2)
        if plain is not None:
            accepted += 1
            assert plain == starlette(CT, bytes(data), 2), bytes(data)
    assert accepted > 100  # damage inside the file data leaves a plain body


def request(data: bytes, content_type: str, declared: bool = True) -> Request:
    """A Starlette request whose body arrives in two pieces."""
    pieces = [data[: len(data) // 2], data[len(data) // 2 :]]
    headers = [(b"content-type", content_type.encode())]
    if declared:
        headers.append((b"content-length", str(len(data)).encode()))

    async def receive() -> dict:
        piece = pieces.pop(0)
        return {"type": "http.request", "body": piece, "more_body": bool(pieces)}

    return Request({"type": "http", "method": "POST", "path": "/predict", "headers": headers}, receive)


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_read_uploads_gives_the_same_files_and_refusals_plain_or_not(declared: bool) -> None:
    async def read(data: bytes, max_images: int = 2, max_bytes: int = 10_000) -> object:
        uploads = await read_uploads(request(data, CT, declared), max_bytes, max_images)
        return uploads.images if uploads.error is None else (uploads.error.status, uploads.error.message)

    assert asyncio.run(read(body([(FILE, DATA), (FILE, b"abc")]))) == [DATA, b"abc"]
    assert asyncio.run(read(body([(FILE, DATA)], end=b"\r\n--xyz--"))) == [DATA]  # Starlette's
    status, message = asyncio.run(read(body([(FILE, DATA)] * 3)))
    assert status == 400 and "at most 2" in message
    status, message = asyncio.run(
        read(body([(b'Content-Disposition: form-data; name="file"; filename="a"', b"x")]))
    )
    assert status == 400 and "No field 'image'" in message
    assert asyncio.run(read(body([(FILE, DATA)]), max_bytes=100))[0] == 413
