"""A streaming ``multipart/form-data`` reader that hands out one file part as it arrives.

Starlette's ``request.form()`` spools every file part (to memory, then disk) before the
route runs, so no limit could stop an upload early. Here python-multipart's push parser is
fed the body chunk by chunk and the file part's data is yielded as soon as it is parsed;
whoever consumes it decides when to stop reading. Everything that is not the file part is
bounded: part count, header size, and the bytes of other fields (skipped).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import unquote

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from obsigen.errors import InvalidInput

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

MAX_PARTS = 8
MAX_FIELD_BYTES = 64 * 1024
MAX_HEADER_BYTES = 8 * 1024
# RFC 5987 ext-value as browsers and curl send it for non-ASCII names.
_FILENAME_STAR = re.compile(r"filename\*\s*=\s*(?:\"?)UTF-8'[^']*'([^;\"\s]+)", re.IGNORECASE)


class MalformedMultipart(InvalidInput):
    pass


def boundary_of(content_type: str) -> bytes | None:
    media, params = parse_options_header(content_type)
    if media.lower() != b"multipart/form-data":
        return None
    boundary = params.get(b"boundary")
    return boundary or None


@dataclass(slots=True)
class _Part:
    headers: dict[str, str] = field(default_factory=dict)

    def disposition(self) -> tuple[str, str | None]:
        raw = self.headers.get("content-disposition", "")
        # Header values are kept as latin-1 (byte-preserving); browsers send names as UTF-8.
        _, params = parse_options_header(raw.encode("latin-1"))
        name = params.get(b"name", b"").decode("utf-8", errors="replace")
        star = _FILENAME_STAR.search(raw)
        if star is not None:
            return name, unquote(star.group(1), errors="replace")
        filename = params.get(b"filename")
        return name, None if filename is None else filename.decode("utf-8", errors="replace")


class MultipartFileStream:
    """``await find_file(field)`` -> the client's file name; then ``data()`` streams it."""

    def __init__(self, body: AsyncIterator[bytes], boundary: bytes) -> None:
        self._body = body
        self._events: deque[tuple[str, bytes]] = deque()
        self._field = bytearray()
        self._value = bytearray()
        self._parts = 0
        self._ended = False
        callbacks: MultipartCallbacks = {
            "on_part_begin": lambda: self._events.append(("begin", b"")),
            "on_header_field": lambda d, s, e: self._field.extend(d[s:e]),
            "on_header_value": lambda d, s, e: self._value.extend(d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": lambda: self._events.append(("headers", b"")),
            "on_part_data": lambda d, s, e: self._events.append(("data", bytes(d[s:e]))),
            "on_part_end": lambda: self._events.append(("end", b"")),
            "on_end": self._end,
        }
        self._parser = MultipartParser(boundary, callbacks, max_header_size=MAX_HEADER_BYTES)
        self._part = _Part()

    def _header_end(self) -> None:
        if len(self._field) + len(self._value) > MAX_HEADER_BYTES:
            raise MalformedMultipart("multipart header too large")
        self._events.append(("header", bytes(self._field).strip().lower() + b"\0" + self._value))
        self._field.clear()
        self._value.clear()

    def _end(self) -> None:
        self._ended = True

    async def _next(self) -> tuple[str, bytes]:
        while not self._events:
            if self._ended:
                return ("eof", b"")
            try:
                chunk = await anext(self._body)
            except StopAsyncIteration:
                raise MalformedMultipart("the multipart body ends early") from None
            if not chunk:
                continue
            try:
                self._parser.write(chunk)
            except MultipartParseError as exc:
                raise MalformedMultipart(f"malformed multipart body: {exc}") from None
        return self._events.popleft()

    async def find_file(self, field_name: str) -> str:
        """Skip (bounded) parts until the file part ``field_name``; return its file name."""
        skipped = 0
        while True:
            kind, data = await self._next()
            if kind == "eof":
                raise MalformedMultipart(f"no file part named {field_name!r}")
            if kind == "begin":
                self._parts += 1
                if self._parts > MAX_PARTS:
                    raise MalformedMultipart("too many multipart parts")
                self._part = _Part()
            elif kind == "header":
                name, _, value = data.decode("latin-1").partition("\0")
                self._part.headers[name] = value
            elif kind == "headers":
                name, filename = self._part.disposition()
                if name == field_name and filename is not None:
                    return filename
            elif kind == "data":
                skipped += len(data)
                if skipped > MAX_FIELD_BYTES:
                    raise MalformedMultipart("form fields other than the file are too large")

    async def data(self) -> AsyncIterator[bytes]:
        """The file part's bytes, as they arrive; ends with the part."""
        while True:
            kind, data = await self._next()
            if kind == "data":
                # Coalesce what one body chunk produced: fewer, larger writes downstream.
                pieces = [data]
                while self._events and self._events[0][0] == "data":
                    pieces.append(self._events.popleft()[1])
                yield b"".join(pieces)
            elif kind in ("end", "eof"):
                return
