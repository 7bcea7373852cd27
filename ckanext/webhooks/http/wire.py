"""HTTP/1.1 on asyncio streams: one POST written, one answer read within caps.

Only what a webhook sender needs, written here rather than borrowed so that
every cap is ours: the response head (interim ``1xx`` heads included) is at
most ``MAX_RESPONSE_HEADERS`` lines and ``MAX_RESPONSE_HEADER_BYTES`` bytes,
and at most ``cap`` bytes of the body are read, raw (an unasked-for gzip body
is never inflated). ``Body.reusable`` says whether the answer was read to its
framed end, so that the connection may carry another request.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from urllib.parse import quote

__all__ = [
    "MAX_RESPONSE_HEADERS",
    "MAX_RESPONSE_HEADER_BYTES",
    "STREAM_LIMIT",
    "BadResponse",
    "Body",
    "Head",
    "NoAnswer",
    "ResponseHeadersTooLarge",
    "read_body",
    "read_head",
    "request_bytes",
    "request_start",
]

MAX_RESPONSE_HEADERS = 64  # header lines in one head (http.client stops at 99)
MAX_RESPONSE_HEADER_BYTES = 16 * 1024  # the whole head, status line included
STREAM_LIMIT = MAX_RESPONSE_HEADER_BYTES  # the StreamReader's line limit

_END_OF_HEAD = b"\r\n\r\n"
_OWN_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
_UNSAFE_IN_TARGET = re.compile(r"[^\x21-\x7e]")
_SAFE_IN_TARGET = "".join(map(chr, range(0x21, 0x7F)))
_CHUNK_SIZE = re.compile(rb"[0-9a-fA-F]{1,16}")
_NO_BODY = frozenset({204, 304})


class ResponseHeadersTooLarge(Exception):
    """The receiver sent more response head than this module reads."""


class BadResponse(Exception):
    """The answer is not HTTP/1.x as this module reads it."""


class NoAnswer(ConnectionError):
    """The connection ended before the first byte of an answer."""


def request_start(path: str, host: str, method: str = "POST") -> bytes:
    """The request line and ``Host`` header (the same for every request with
    one method to one URL, so callers may keep it)."""
    if _UNSAFE_IN_TARGET.search(path):  # non-ASCII or control characters
        path = quote(path, safe=_SAFE_IN_TARGET)
    return f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n".encode("ascii")


def request_bytes(start: bytes, headers: dict[str, str], body: bytes) -> bytes:
    """The whole request; ``Host`` and framing are ours, not the caller's."""
    lines = [f"Content-Length: {len(body)}"]
    identity = True  # ask for the body as it is: it is never decompressed
    for name, value in headers.items():
        lowered = name.lower()
        if lowered not in _OWN_HEADERS:
            lines.append(f"{name}: {value}")
            identity = identity and lowered != "accept-encoding"
    if identity:
        lines.append("Accept-Encoding: identity")
    head = "\r\n".join(lines)
    breaks = len(lines) - 1
    if head.count("\n") != breaks or head.count("\r") != breaks or "\0" in head:
        raise ValueError("a header name or value holds a line break")
    return start + (head + "\r\n\r\n").encode("latin-1") + body


@dataclasses.dataclass
class Head:
    """The final answer's status line and headers (names in lower case)."""

    status: int
    fields: dict[bytes, bytes]
    keep_alive: bool

    def text(self, name: bytes) -> str | None:
        value = self.fields.get(name)
        return None if value is None else value.decode("latin-1")


@dataclasses.dataclass
class Body:
    data: bytes  # at most the cap
    reusable: bool  # read to its framed end on a keep-alive connection


async def read_head(reader: asyncio.StreamReader) -> Head:
    """The first final (non-1xx) head; interim heads are read and skipped."""
    budget = MAX_RESPONSE_HEADER_BYTES
    first = True
    while True:
        try:
            raw = await reader.readuntil(_END_OF_HEAD)
        except asyncio.LimitOverrunError:
            raise ResponseHeadersTooLarge from None
        except asyncio.IncompleteReadError as error:
            if first and not error.partial:
                raise NoAnswer("closed before answering") from None
            raise
        budget -= len(raw)
        if budget < 0:
            raise ResponseHeadersTooLarge
        head = _parse_head(raw)
        if not 100 <= head.status < 200 or head.status == 101:
            return head
        first = False


def _parse_head(raw: bytes) -> Head:
    lines = raw[:-4].split(b"\r\n")  # without the blank line
    if len(lines) > MAX_RESPONSE_HEADERS + 1:
        raise ResponseHeadersTooLarge
    version, _, rest = lines[0].partition(b" ")
    code = rest[:3]
    if version not in (b"HTTP/1.1", b"HTTP/1.0") or not (
        len(code) == 3 and code.isdigit() and rest[3:4] in (b"", b" ")
    ):
        raise BadResponse("not an HTTP/1.x status line")
    fields: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon:
            raise BadResponse("a header line without a colon")
        name, value = name.strip().lower(), value.strip()
        if name not in fields:
            fields[name] = value
        elif name == b"content-length":
            if fields[name] != value:
                raise BadResponse("two different Content-Length headers")
        else:
            fields[name] += b", " + value
    keep_alive = version == b"HTTP/1.1"
    if keep_alive and (connection := fields.get(b"connection")) is not None:
        tokens = [token.strip() for token in connection.lower().split(b",")]
        keep_alive = b"close" not in tokens
    return Head(int(code), fields, keep_alive)


async def read_body(reader: asyncio.StreamReader, head: Head, cap: int) -> Body:
    """At most ``cap`` bytes of the body; reusable only if that was all of it."""
    if head.status < 200 or head.status in _NO_BODY:
        return Body(b"", head.keep_alive and head.status != 101)
    coding = head.fields.get(b"transfer-encoding")
    if coding is not None:
        if coding.lower().rsplit(b",", 1)[-1].strip() != b"chunked":
            return Body(await _read_until_closed(reader, cap), False)
        data, complete = await _read_chunked(reader, cap)
        length_too = b"content-length" in head.fields  # smuggling-shaped: close
        return Body(data, complete and head.keep_alive and not length_too)
    length = head.fields.get(b"content-length")
    if length is None:
        return Body(await _read_until_closed(reader, cap), False)
    if not length.isdigit():
        raise BadResponse("Content-Length is not a number")
    size = int(length)
    if size > cap:
        return Body(await reader.readexactly(cap), False)
    return Body(await reader.readexactly(size), head.keep_alive)


async def _read_until_closed(reader: asyncio.StreamReader, cap: int) -> bytes:
    data = bytearray()
    while len(data) <= cap:
        chunk = await reader.read(cap + 1 - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data[:cap])


async def _read_chunked(reader: asyncio.StreamReader, cap: int) -> tuple[bytes, bool]:
    """(data, complete): the chunks up to the cap; complete if read to the end."""
    data = bytearray()
    while True:
        size = _chunk_size(await _line(reader))
        if size == 0:
            await _skip_trailers(reader)
            return bytes(data), True
        if len(data) + size > cap:
            data += await reader.readexactly(cap - len(data))
            return bytes(data), False
        data += await reader.readexactly(size)
        if await reader.readexactly(2) != b"\r\n":
            raise BadResponse("a chunk does not end with CRLF")


async def _line(reader: asyncio.StreamReader) -> bytes:
    try:
        line = await reader.readline()
    except ValueError:  # longer than the stream's limit
        raise BadResponse("a line too long") from None
    if not line.endswith(b"\n"):
        raise asyncio.IncompleteReadError(line, None)
    return line


def _chunk_size(line: bytes) -> int:
    text = line.split(b";", 1)[0].strip()
    if not _CHUNK_SIZE.fullmatch(text):
        raise BadResponse("not a chunk size")
    return int(text, 16)


async def _skip_trailers(reader: asyncio.StreamReader) -> None:
    for _ in range(MAX_RESPONSE_HEADERS + 1):
        if await _line(reader) in (b"\r\n", b"\n"):
            return
    raise ResponseHeadersTooLarge
