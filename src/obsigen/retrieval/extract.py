"""Text out of an uploaded file, one section per page, slide, sheet block or heading.

Each section carries a locator ("page 3", "slide 2", "sheet Budget, rows 2-41",
"section Pricing", "lines 1-30") that search results cite. Extraction is bounded: at most
``max_pages`` pages or slides, ``max_rows`` rows per sheet and ``max_chars`` characters in all
(the rest is left out and ``truncated`` says so). The upload pipeline has already refused zip
bombs and mislabelled content; what still goes wrong in a parser (a malformed PDF, a broken
part) becomes :class:`ExtractionFailed` with a message a person can act on.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from obsigen.errors import ObsigenError

MIME_KINDS: dict[str, str] = {
    "application/pdf": "pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": "pptx",
    "text/plain": "txt",
    "text/markdown": "md",
    "text/csv": "csv",
    "application/json": "json",
}
# Plain-text sections are cut at blank lines into blocks of about this size, so that a
# locator ("lines 40-71") points somewhere a person can find.
TEXT_BLOCK_CHARS = 1500
SHEET_BLOCK_ROWS = 40
LOCATOR_CHARS = 200
_MD_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_SPACES = re.compile(r"[ \t\u00a0]+")


class ExtractionFailed(ObsigenError):
    status = 422
    type_slug = "extraction-failed"
    title = "The file's text could not be extracted"


class NoText(ExtractionFailed):
    """A type without text to index (an image)."""

    type_slug = "no-text"


@dataclass(frozen=True, slots=True)
class Section:
    locator: str
    text: str


@dataclass(frozen=True, slots=True)
class ExtractLimits:
    max_pages: int = 2000
    max_rows: int = 20_000
    max_chars: int = 5_000_000


@dataclass(slots=True)
class Extracted:
    sections: list[Section] = field(default_factory=list)
    truncated: bool = False
    _chars: int = 0

    def add(self, locator: str, text: str, limits: ExtractLimits) -> bool:
        """Add a section; False once the character budget is spent (stop extracting)."""
        text = _tidy(text)
        if not text:
            return True
        room = limits.max_chars - self._chars
        if room <= 0:
            self.truncated = True
            return False
        if len(text) > room:
            text = text[:room]
            self.truncated = True
        self._chars += len(text)
        self.sections.append(Section(locator[:LOCATOR_CHARS], text))
        return not self.truncated


def kind_of(content_type: str, name: str) -> str | None:
    mime = content_type.split(";", 1)[0].strip().lower()
    if mime in MIME_KINDS:
        return MIME_KINDS[mime]
    _, dot, ext = name.rpartition(".")
    ext = ext.lower()
    return {"markdown": "md", "text": "txt"}.get(ext, ext) if dot else None


def extract(data: bytes, kind: str, limits: ExtractLimits | None = None) -> Extracted:
    """The sections of ``data`` (CPU-bound: call it off the event loop)."""
    limits = limits or ExtractLimits()
    extractor = _EXTRACTORS.get(kind)
    if extractor is None:
        raise NoText(f"files of type {kind!r} have no text to index")
    out = Extracted()
    try:
        extractor(data, limits, out)
    except ExtractionFailed:
        raise
    except Exception as exc:  # a parser's failure on a bad file, whatever its kind
        raise ExtractionFailed(
            f"the {kind.upper()} file could not be read ({type(exc).__name__}: {str(exc)[:200]})"
        ) from exc
    return out


def _tidy(text: str) -> str:
    lines = (_SPACES.sub(" ", line).strip() for line in text.replace("\r", "\n").split("\n"))
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip()


# --- PDF -------------------------------------------------------------------------------------


def _pdf(data: bytes, limits: ExtractLimits, out: Extracted) -> None:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data), strict=False)
    if reader.is_encrypted and not reader.decrypt(""):
        raise ExtractionFailed("the PDF is encrypted with a password")
    for number, page in enumerate(reader.pages, start=1):
        if number > limits.max_pages:
            out.truncated = True
            return
        if not out.add(f"page {number}", page.extract_text() or "", limits):
            return


# --- Office documents ------------------------------------------------------------------------


def _docx(data: bytes, limits: ExtractLimits, out: Extracted) -> None:
    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    document = docx.Document(io.BytesIO(data))
    label = "start of document"
    lines: list[str] = []

    def flush() -> bool:
        ok = out.add(label, "\n".join(lines), limits)
        lines.clear()
        return ok

    for block in document.iter_inner_content():
        if isinstance(block, Paragraph):
            style = (block.style.name if block.style is not None else "") or ""
            if style.lower().startswith(("heading", "title")) and block.text.strip():
                if not flush():
                    return
                label = f"section {block.text.strip()}"
            lines.append(block.text)
        elif isinstance(block, Table):
            for row in block.rows:
                lines.append(" | ".join(cell.text.strip() for cell in row.cells))
        if sum(len(line) for line in lines) > limits.max_chars:
            break
    flush()


def _xlsx(data: bytes, limits: ExtractLimits, out: Extracted) -> None:
    import openpyxl  # type: ignore[import-untyped]  # ships no type information

    book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    try:
        for sheet in book.worksheets:
            header: str | None = None
            block: list[str] = []
            first = 0
            for number, row in enumerate(sheet.iter_rows(values_only=True), start=1):
                if number > limits.max_rows:
                    out.truncated = True
                    break
                line = " | ".join("" if value is None else str(value) for value in row).strip(" |")
                if not line:
                    continue
                if header is None:
                    header = line
                if not block:
                    first = number
                block.append(line)
                if len(block) >= SHEET_BLOCK_ROWS:
                    if not _sheet_block(out, sheet.title, header, block, first, number, limits):
                        return
                    block = []
            if block and not _sheet_block(
                out, sheet.title, header, block, first, first + len(block) - 1, limits
            ):
                return
    finally:
        book.close()


def _sheet_block(
    out: Extracted,
    title: str,
    header: str | None,
    block: list[str],
    first: int,
    last: int,
    limits: ExtractLimits,
) -> bool:
    # Each block repeats the header row, so a chunk of numbers still says what they are.
    lines = block if header is None or block[0] == header else [header, *block]
    return out.add(f"sheet {title}, rows {first}-{last}", "\n".join(lines), limits)


def _pptx(data: bytes, limits: ExtractLimits, out: Extracted) -> None:
    from pptx import Presentation

    presentation = Presentation(io.BytesIO(data))
    for number, slide in enumerate(presentation.slides, start=1):
        if number > limits.max_pages:
            out.truncated = True
            return
        lines: list[str] = []
        for shape in slide.shapes:
            if getattr(shape, "has_text_frame", False) and shape.has_text_frame:
                lines.append(shape.text_frame.text)
            if getattr(shape, "has_table", False) and shape.has_table:
                for row in shape.table.rows:
                    lines.append(" | ".join(cell.text.strip() for cell in row.cells))
        if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
            lines.append(slide.notes_slide.notes_text_frame.text)
        if not out.add(f"slide {number}", "\n".join(lines), limits):
            return


# --- text ------------------------------------------------------------------------------------


def _decode(data: bytes) -> str:
    return data.decode("utf-8-sig", errors="replace")


def _line_blocks(lines: list[str], first_line: int) -> Iterator[tuple[int, int, str]]:
    """Blocks of about TEXT_BLOCK_CHARS, cut at blank lines where possible."""
    start, size = 0, 0
    for index, line in enumerate(lines):
        size += len(line) + 1
        at_break = not line.strip()
        if size >= TEXT_BLOCK_CHARS and (at_break or size >= 2 * TEXT_BLOCK_CHARS):
            yield first_line + start, first_line + index, "\n".join(lines[start : index + 1])
            start, size = index + 1, 0
    if start < len(lines):
        yield first_line + start, first_line + len(lines) - 1, "\n".join(lines[start:])


def _txt(data: bytes, limits: ExtractLimits, out: Extracted) -> None:
    lines = _decode(data[: limits.max_chars * 4]).splitlines()
    for first, last, text in _line_blocks(lines, 1):
        if not out.add(f"lines {first}-{last}", text, limits):
            return


def _md(data: bytes, limits: ExtractLimits, out: Extracted) -> None:
    lines = _decode(data[: limits.max_chars * 4]).splitlines()
    heading, start = "", 0
    sections: list[tuple[str, int, list[str]]] = []
    for index, line in enumerate(lines):
        match = _MD_HEADING.match(line)
        if match:
            sections.append((heading, start, lines[start:index]))
            heading, start = match.group(2), index
    sections.append((heading, start, lines[start:]))
    for title, offset, body in sections:
        for first, last, text in _line_blocks(body, offset + 1):
            locator = f"section {title}" if title else f"lines {first}-{last}"
            if not out.add(locator, text, limits):
                return


def _csv(data: bytes, limits: ExtractLimits, out: Extracted) -> None:
    text = _decode(data[: limits.max_chars * 4])
    reader = csv.reader(io.StringIO(text))
    header: str | None = None
    block: list[str] = []
    first = 0
    for number, row in enumerate(reader, start=1):
        if number > limits.max_rows:
            out.truncated = True
            break
        line = " | ".join(cell.strip() for cell in row).strip(" |")
        if not line:
            continue
        if header is None:
            header = line
        if not block:
            first = number
        block.append(line)
        if len(block) >= SHEET_BLOCK_ROWS:
            lines = block if block[0] == header else [header, *block]
            if not out.add(f"rows {first}-{number}", "\n".join(lines), limits):
                return
            block = []
    if block:
        lines = block if block[0] == header or header is None else [header, *block]
        out.add(f"rows {first}-{first + len(block) - 1}", "\n".join(lines), limits)


_EXTRACTORS = {
    "pdf": _pdf,
    "docx": _docx,
    "xlsx": _xlsx,
    "pptx": _pptx,
    "txt": _txt,
    "md": _md,
    "csv": _csv,
    # JSON is indexed as its text: keys next to values are what people search for.
    "json": _txt,
}
