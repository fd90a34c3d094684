"""Content-based type detection for the upload allow-list (no libmagic needed).

The name's extension says what the uploader claims; the bytes say what it is. Both must name
the same allowed type. Detection, fed chunk by chunk as the upload streams:

* refused outright, whatever the name: executables (ELF, PE, Mach-O, ``#!`` scripts) and
  active markup (HTML, SVG, XML) at the start of the content;
* PDF (``%PDF-``), PNG (signature + IHDR), JPEG (SOI + marker);
* zip: handed to :mod:`obsigen.files.ooxml` for the limits and the package check, which
  tells DOCX, XLSX and PPTX apart by their main part;
* text (TXT, MD, CSV, JSON): the whole stream is valid UTF-8 without NUL or other control
  characters but tab, newline, carriage return and form feed. JSON must also start like JSON.
"""

from __future__ import annotations

import asyncio
import codecs
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from obsigen.files.errors import UnsupportedFile
from obsigen.files.ooxml import ZipLimits, ooxml_kind

MIME_TYPES: dict[str, str] = {
    "pdf": "application/pdf",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "txt": "text/plain; charset=utf-8",
    "md": "text/markdown; charset=utf-8",
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "png": "image/png",
    "jpeg": "image/jpeg",
}
EXTENSIONS: dict[str, str] = {kind: kind for kind in MIME_TYPES} | {
    "jpg": "jpeg",
    "markdown": "md",
    "text": "txt",
}
TEXT_KINDS = frozenset({"txt", "md", "csv", "json"})
OOXML_KINDS = frozenset({"docx", "xlsx", "pptx"})

HEAD_BYTES = 1024
_EXECUTABLE_MAGICS = (
    b"\x7fELF",
    b"MZ",
    b"\xfe\xed\xfa\xce",
    b"\xfe\xed\xfa\xcf",
    b"\xce\xfa\xed\xfe",
    b"\xcf\xfa\xed\xfe",
    b"\xca\xfe\xba\xbe",
    b"#!",
)
# What a browser would sniff as markup; checked on the start of the (decoded) content.
_ACTIVE_MARKUP = re.compile(
    rb"^(?:\xef\xbb\xbf)?\s*<(?:!doctype\s+html|html|head|body|script|iframe|svg|\?xml)\b",
    re.IGNORECASE,
)
_BAD_TEXT = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
_JSON_START = re.compile(rb'^(?:\xef\xbb\xbf)?\s*[\[{"\-0-9tfn]')


def kind_of_name(name: str) -> str | None:
    _, dot, ext = name.rpartition(".")
    return EXTENSIONS.get(ext.lower()) if dot else None


def kind_of_head(head: bytes) -> str | None:
    """The binary type the first bytes prove, or None (text, zip or unknown)."""
    if head.startswith(b"%PDF-"):
        return "pdf"
    if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
        return "png"
    if len(head) >= 4 and head.startswith(b"\xff\xd8\xff") and head[3] >= 0xC0:
        return "jpeg"
    return None


def refuse_dangerous(head: bytes) -> None:
    if head.startswith(_EXECUTABLE_MAGICS):
        raise UnsupportedFile("executable content is not accepted")
    if _ACTIVE_MARKUP.match(head):
        raise UnsupportedFile("HTML, SVG and XML content is not accepted")


@dataclass(frozen=True, slots=True)
class Detected:
    kind: str
    mime: str


class ContentInspector:
    """Fed the upload's chunks in order; ``finish`` names the type or refuses the content.

    Holds at most ``HEAD_BYTES`` in memory. A zip is copied to an anonymous temporary file
    (gone when closed, even after a crash) because its directory sits at the end.
    """

    def __init__(
        self, claimed: str, allowed: Iterable[str], limits: ZipLimits, scratch_dir: Path
    ) -> None:
        self.claimed = claimed
        self._allowed = frozenset(allowed)
        self._limits = limits
        self._scratch_dir = scratch_dir
        self._head = b""
        self._decoder = codecs.getincrementaldecoder("utf-8")("strict")
        self._text = claimed in TEXT_KINDS
        self._zip: BinaryIO | None = None
        self._started = False

    async def feed(self, chunk: bytes) -> None:
        if len(self._head) < HEAD_BYTES:
            self._head += chunk[: HEAD_BYTES - len(self._head)]
        if not self._started and len(self._head) >= 4:
            self._start()
        if self._text:
            self._check_text(chunk, final=False)
        if self._zip is not None:
            await asyncio.to_thread(self._zip.write, chunk)

    def _start(self) -> None:
        # Decided on the first bytes: only a zip that claims to be OOXML is worth a copy.
        self._started = True
        if self.claimed in OOXML_KINDS and self._head.startswith(b"PK\x03\x04"):
            self._scratch_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Lives across feed() calls; close() (from finish or the pipeline) ends it.
            self._zip = tempfile.TemporaryFile(dir=self._scratch_dir)  # noqa: SIM115

    def _check_text(self, chunk: bytes, final: bool) -> None:
        try:
            text = self._decoder.decode(chunk, final)
        except UnicodeDecodeError:
            self._text = False
            return
        if _BAD_TEXT.search(text):
            self._text = False

    async def finish(self) -> Detected:
        try:
            kind = await self._detect()
        finally:
            self.close()
        if kind != self.claimed:
            raise UnsupportedFile(
                f"the content is {kind or 'of an unknown type'}, not {self.claimed} as named"
            )
        if kind not in self._allowed:
            raise UnsupportedFile(f"{kind} files are not accepted here")
        return Detected(kind, MIME_TYPES[kind])

    async def _detect(self) -> str | None:
        refuse_dangerous(self._head)
        binary = kind_of_head(self._head)
        if binary is not None:
            return binary
        if self._head.startswith(b"PK\x03\x04"):
            if self._zip is None:
                return "zip"
            zip_file = self._zip
            zip_file.flush()
            return await asyncio.to_thread(ooxml_kind, zip_file, self._limits) or "zip"
        if self._text:
            self._check_text(b"", final=True)
        if not self._text:
            return None
        if self.claimed == "json" and not _JSON_START.match(self._head):
            return "txt"
        return self.claimed

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
            self._zip = None
