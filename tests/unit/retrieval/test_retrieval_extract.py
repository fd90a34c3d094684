"""Text comes out of every indexed type with the locator of where it was; bad files fail
clearly and within the limits."""

from __future__ import annotations

import io
import time
import zipfile

import pytest
from tests.unit.retrieval.documents import docx_bytes, pdf, pptx_bytes, xlsx_bytes

from obsigen.retrieval.extract import (
    ExtractionFailed,
    ExtractLimits,
    NoText,
    extract,
    kind_of,
)


def by_locator(kind: str, data: bytes, limits: ExtractLimits | None = None) -> dict[str, str]:
    return {s.locator: s.text for s in extract(data, kind, limits).sections}


def test_pdf_text_is_found_per_page() -> None:
    sections = by_locator("pdf", pdf(["Alpha page text", "Beta page (second)", "Gamma"]))
    assert list(sections) == ["page 1", "page 2", "page 3"]
    assert "Beta page (second)" in sections["page 2"]


def test_docx_sections_follow_the_headings_and_keep_tables() -> None:
    data = docx_bytes(
        {"Pricing": ["The licence costs 40 euros a seat."], "Support": ["Mail the helpdesk."]},
        table=[["Plan", "Seats"], ["Team", "25"]],
    )
    sections = by_locator("docx", data)
    assert list(sections) == ["start of document", "section Pricing", "section Support"]
    assert "40 euros a seat" in sections["section Pricing"]
    # The table comes after the last heading, so it belongs to that section.
    assert "Team | 25" in sections["section Support"]


def test_xlsx_rows_come_in_blocks_per_sheet_with_the_header_repeated() -> None:
    rows: list[list[object]] = [["Item", "Cost"]] + [[f"item {i}", i] for i in range(1, 60)]
    data = xlsx_bytes({"Budget": rows, "Empty": []})
    sections = by_locator("xlsx", data)
    assert list(sections) == ["sheet Budget, rows 1-40", "sheet Budget, rows 41-60"]
    second = sections["sheet Budget, rows 41-60"]
    assert second.splitlines()[0] == "Item | Cost"
    assert "item 45 | 45" in second


def test_pptx_text_is_found_per_slide_with_notes() -> None:
    data = pptx_bytes([("Roadmap", "Launch in March"), ("Risks", "Supplier delays")], "say hi")
    sections = by_locator("pptx", data)
    assert list(sections) == ["slide 1", "slide 2"]
    assert "Supplier delays" in sections["slide 2"]
    assert "Risks" in sections["slide 2"]
    assert "say hi" in sections["slide 1"]


def test_markdown_sections_are_named_by_their_heading() -> None:
    text = "intro line\n\n# Install\nRun the installer.\n\n## Configure\nEdit the file.\n"
    sections = by_locator("md", text.encode())
    assert list(sections) == ["lines 1-2", "section Install", "section Configure"]


def test_plain_text_csv_and_json_keep_line_and_row_numbers() -> None:
    text = ("para one\n" * 200) + "\n" + ("para two\n" * 200)
    txt = by_locator("txt", text.encode())
    assert next(iter(txt)).startswith("lines 1-")
    assert len(txt) >= 2
    csv = by_locator("csv", b"name,city\nAda,London\nLinus,Helsinki\n")
    assert csv == {"rows 1-3": "name | city\nAda | London\nLinus | Helsinki"}
    assert "Helsinki" in by_locator("json", b'{"city": "Helsinki"}')["lines 1-1"]


def test_kind_comes_from_the_detected_type_then_the_name() -> None:
    assert kind_of("text/markdown; charset=utf-8", "x.txt") == "md"
    assert kind_of("", "notes.MARKDOWN") == "md"
    assert kind_of("image/png", "x.png") == "png"
    assert kind_of("", "no-extension") is None


def test_images_have_no_text_to_index() -> None:
    with pytest.raises(NoText):
        extract(b"\x89PNG", "png")


@pytest.mark.parametrize(
    ("kind", "data"),
    [
        ("pdf", b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 9 0 R >>\n"),
        ("pdf", b"%PDF-1.7\n" + b"\x00garbage" * 500),
        ("docx", b"PK\x03\x04 not really a zip"),
        ("xlsx", b"not a workbook"),
        ("pptx", b""),
    ],
)
def test_a_malformed_file_fails_with_a_clear_message(kind: str, data: bytes) -> None:
    started = time.perf_counter()
    with pytest.raises(ExtractionFailed) as failure:
        extract(data, kind)
    assert failure.value.detail.startswith(f"the {kind.upper()} file could not be read")
    assert time.perf_counter() - started < 5


def test_a_zip_that_is_not_the_claimed_document_fails() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("hello.txt", "hi")
    with pytest.raises(ExtractionFailed, match="DOCX"):
        extract(buffer.getvalue(), "docx")


def test_extraction_stops_at_the_limits_and_says_so() -> None:
    pages = pdf([f"page number {i}" for i in range(1, 30)])
    limited = extract(pages, "pdf", ExtractLimits(max_pages=5))
    assert [s.locator for s in limited.sections] == [f"page {i}" for i in range(1, 6)]
    assert limited.truncated
    chars = extract(("word " * 10_000).encode(), "txt", ExtractLimits(max_chars=1000))
    assert sum(len(s.text) for s in chars.sections) <= 1000
    assert chars.truncated
    rows = extract(b"a\n" * 500, "csv", ExtractLimits(max_rows=100))
    assert rows.truncated
