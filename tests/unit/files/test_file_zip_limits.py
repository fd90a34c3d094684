"""Zip-bomb and structure limits on OOXML containers: each attack refused, the normal
document accepted under the same limits."""

from __future__ import annotations

import io
import zlib

import pytest
from tests.unit.files.file_samples import (
    deflate,
    high_ratio_docx,
    many_entries_docx,
    nested_zip_docx,
    ooxml,
    raw_zip,
)

from obsigen.files.errors import UnsafeArchive
from obsigen.files.ooxml import ZipLimits, ooxml_kind

LIMITS = ZipLimits(max_entries=50, max_total_uncompressed=4 * 1024 * 1024, max_ratio=100)


def kind(data: bytes, limits: ZipLimits = LIMITS) -> str | None:
    return ooxml_kind(io.BytesIO(data), limits)


@pytest.mark.parametrize("name", ["docx", "xlsx", "pptx"])
def test_normal_documents_pass(name: str) -> None:
    assert kind(ooxml(name)) == name


def test_moderately_compressible_content_passes() -> None:
    text = b"".join(b"<w:t>line %d of ordinary text</w:t>" % i for i in range(20000))
    assert kind(ooxml("docx", extra={"word/extra.xml": text})) == "docx"


def test_high_ratio_entry_is_refused() -> None:
    with pytest.raises(UnsafeArchive, match=r"ratio|size"):
        kind(high_ratio_docx(2 * 1024 * 1024))


def test_total_uncompressed_size_is_limited() -> None:
    limits = ZipLimits(max_entries=50, max_total_uncompressed=1024 * 1024, max_ratio=10_000)
    with pytest.raises(UnsafeArchive, match="uncompressed size"):
        kind(high_ratio_docx(2 * 1024 * 1024), limits)


def test_too_many_entries_are_refused() -> None:
    with pytest.raises(UnsafeArchive, match="too many entries"):
        kind(many_entries_docx(60))
    assert kind(many_entries_docx(40)) == "docx"


@pytest.mark.parametrize("disguised", [False, True])
def test_nested_zip_is_refused_by_name_or_content(disguised: bool) -> None:
    with pytest.raises(UnsafeArchive, match="nested"):
        kind(nested_zip_docx(disguised))


def test_entry_inflating_beyond_its_declared_size_is_refused() -> None:
    # The headers claim 100 bytes with the CRC of those 100 bytes; the stream holds 1 MiB.
    # zipfile alone would stop at 100 bytes and report nothing.
    payload = b"A" * (1024 * 1024)
    entry = ("word/document.xml", deflate(payload), 8, 100, zlib.crc32(payload[:100]))
    with pytest.raises(UnsafeArchive, match="declared size"):
        kind(raw_zip([entry]))


def test_wrong_crc_is_refused() -> None:
    data = b"<w:document/>"
    with pytest.raises(UnsafeArchive, match="checksum"):
        kind(raw_zip([("word/document.xml", data, 0, len(data), 1234)]))


def test_overlapping_entries_are_refused() -> None:
    data = b"<x/>"
    crc = zlib.crc32(data)
    entries = [("a.xml", data, 0, len(data), crc), ("b.xml", data, 0, len(data), crc)]
    with pytest.raises(UnsafeArchive, match="overlapping"):
        kind(raw_zip(entries, offsets=[0, 0]))


@pytest.mark.parametrize("name", ["../evil.xml", "/abs.xml", "a\\b.xml", "C:x.xml", "a/./b"])
def test_unsafe_entry_paths_are_refused(name: str) -> None:
    data = b"<x/>"
    with pytest.raises(UnsafeArchive, match="unsafe path"):
        kind(raw_zip([(name, data, 0, len(data), zlib.crc32(data))]))


def test_data_before_the_first_entry_is_refused() -> None:
    with pytest.raises(UnsafeArchive):
        kind(b"%PDF-1.4 polyglot\n" + ooxml("docx"))


@pytest.mark.parametrize("data", [b"PK\x03\x04 truncated", b"not a zip at all"])
def test_garbage_is_refused(data: bytes) -> None:
    with pytest.raises(UnsafeArchive):
        kind(data)


def test_plain_zip_is_not_ooxml() -> None:
    data = b"x"
    assert kind(raw_zip([("x.txt", data, 0, 1, zlib.crc32(data))])) is None
