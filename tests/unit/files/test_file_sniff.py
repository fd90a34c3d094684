"""Content-based detection: every allowed type by its bytes, mismatches and active content
refused, text checked over the whole stream."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.unit.files.file_samples import allowed_samples, ooxml, pdf, plain_zip, png

from obsigen.config import FILE_TYPES
from obsigen.files.errors import UnsafeArchive, UnsupportedFile
from obsigen.files.ooxml import ZipLimits
from obsigen.files.sniff import MIME_TYPES, ContentInspector, Detected, kind_of_name


async def detect(
    name: str, data: bytes, tmp_path: Path, allowed: tuple[str, ...] = FILE_TYPES, step: int = 7
) -> Detected:
    claimed = kind_of_name(name)
    assert claimed is not None
    inspector = ContentInspector(claimed, allowed, ZipLimits(), tmp_path / "scratch")
    # Odd-sized pieces: detection must not depend on where the chunks break.
    for start in range(0, len(data), step):
        await inspector.feed(data[start : start + step])
    return await inspector.finish()


def test_the_allow_list_and_the_detector_agree() -> None:
    assert set(FILE_TYPES) == set(MIME_TYPES)


@pytest.mark.parametrize("kind", sorted(allowed_samples()))
async def test_allowed_types_are_recognised(kind: str, tmp_path: Path) -> None:
    name, data = allowed_samples()[kind]
    detected = await detect(name, data, tmp_path)
    assert detected == Detected(kind, MIME_TYPES[kind])


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("pixel.pdf", png()),  # PNG named .pdf
        ("report.png", pdf()),
        ("letter.docx", ooxml("xlsx")),  # one OOXML kind named as another
        ("notes.txt", pdf()),
        ("report.pdf", b"just text"),
        ("data.json", b"hello, not json"),
        ("letter.docx", plain_zip({"a.txt": b"a"})),  # a zip that is no OOXML package
        ("photo.jpg", b"\xff\xd8\x00garbage"),
    ],
)
async def test_extension_and_content_must_agree(name: str, data: bytes, tmp_path: Path) -> None:
    with pytest.raises(UnsupportedFile):
        await detect(name, data, tmp_path)


@pytest.mark.parametrize(
    "data",
    [
        b"\x7fELF\x02\x01\x01" + b"\x00" * 64,
        b"MZ\x90\x00\x03" + b"\x00" * 64,
        b"#!/bin/sh\nrm -rf /\n",
        b"<!DOCTYPE html><html><script>alert(1)</script></html>",
        b"  <html><body>hi</body></html>",
        b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>',
        b'\xef\xbb\xbf<?xml version="1.0"?><svg/>',
        b"<script>alert(1)</script>",
    ],
)
async def test_executables_and_active_markup_are_refused_even_as_text(
    data: bytes, tmp_path: Path
) -> None:
    with pytest.raises(UnsupportedFile):
        await detect("harmless.txt", data, tmp_path)


@pytest.mark.parametrize(
    "data",
    [
        b"fine start " * 1000 + b"\x00 binary tail",
        b"fine start " * 1000 + b"\xff\xfe not utf-8",
        b"ends in the middle of a character \xc3",
        b"escape \x1b[31m red",
    ],
)
async def test_text_must_be_clean_utf8_to_the_end(data: bytes, tmp_path: Path) -> None:
    with pytest.raises(UnsupportedFile):
        await detect("notes.txt", data, tmp_path)


async def test_text_allows_tabs_crlf_and_a_bom(tmp_path: Path) -> None:
    detected = await detect("t.csv", b"\xef\xbb\xbfa\tb\r\n1\t2\r\n\x0c", tmp_path)
    assert detected.kind == "csv"


async def test_a_type_outside_the_configured_allow_list_is_refused(tmp_path: Path) -> None:
    name, data = allowed_samples()["png"]
    with pytest.raises(UnsupportedFile):
        await detect(name, data, tmp_path, allowed=("pdf",))


async def test_macro_enabled_documents_are_refused(tmp_path: Path) -> None:
    macro = ooxml(
        "docx",
        main_type="application/vnd.ms-word.document.macroEnabled.main+xml",
        extra={"word/vbaProject.bin": b"\xd0\xcf\x11\xe0"},
    )
    with pytest.raises(UnsupportedFile, match="macros"):
        await detect("letter.docx", macro, tmp_path)


async def test_content_types_with_a_dtd_are_refused(tmp_path: Path) -> None:
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        '<!ENTITY lol2 "&lol;&lol;&lol;&lol;">]><Types>&lol2;</Types>'
    )
    with pytest.raises(UnsafeArchive, match="DTD"):
        await detect("letter.docx", ooxml("docx", content_types_xml=bomb), tmp_path)


async def test_the_zip_copy_is_gone_after_detection(tmp_path: Path) -> None:
    name, data = allowed_samples()["docx"]
    await detect(name, data, tmp_path)
    assert list((tmp_path / "scratch").iterdir()) == []
