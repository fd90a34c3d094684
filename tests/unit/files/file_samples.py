"""Small real files of every allowed type, and hostile ones, built in code (no office libraries
are installed: the OOXML packages are written part by part as Office lays them out)."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

CT_NS = "http://schemas.openxmlformats.org/package/2006/content-types"
MAIN = {
    "docx": (
        "word/document.xml",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml",
        '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
        "<w:body><w:p><w:r><w:t>Hallo</w:t></w:r></w:p></w:body></w:document>",
    ),
    "xlsx": (
        "xl/workbook.xml",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml",
        '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
        '<sheets><sheet name="S" sheetId="1"/></sheets></workbook>',
    ),
    "pptx": (
        "ppt/presentation.xml",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation.main+xml",
        '<p:presentation xmlns:p="http://schemas.openxmlformats.org/presentationml/2006/main"/>',
    ),
}


def content_types(overrides: dict[str, str]) -> str:
    items = "".join(
        f'<Override PartName="/{part}" ContentType="{ct}"/>' for part, ct in overrides.items()
    )
    return (
        f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Types xmlns="{CT_NS}">'
        '<Default Extension="rels" '
        'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        f'<Default Extension="xml" ContentType="application/xml"/>{items}</Types>'
    )


def ooxml(
    kind: str,
    extra: dict[str, bytes] | None = None,
    main_type: str | None = None,
    content_types_xml: str | None = None,
) -> bytes:
    part, ct, body = MAIN[kind]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(
            "[Content_Types].xml", content_types_xml or content_types({part: main_type or ct})
        )
        archive.writestr(
            "_rels/.rels",
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/'
            f'2006/relationships/officeDocument" Target="{part}"/></Relationships>',
        )
        archive.writestr(part, body)
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return out.getvalue()


def plain_zip(entries: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return out.getvalue()


def pdf() -> bytes:
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png() -> bytes:
    """A 1x1 RGB pixel."""
    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", pixels)
        + _png_chunk(b"IEND", b"")
    )


def jpeg() -> bytes:
    """SOI, a JFIF APP0 segment, a comment, EOI: what every decoder checks first."""
    app0 = b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    comment = b"obsigen test"
    return (
        b"\xff\xd8"
        + b"\xff\xe0"
        + struct.pack(">H", len(app0) + 2)
        + app0
        + b"\xff\xfe"
        + struct.pack(">H", len(comment) + 2)
        + comment
        + b"\xff\xd9"
    )


def allowed_samples() -> dict[str, tuple[str, bytes]]:
    """kind -> (file name, content)."""
    return {
        "pdf": ("report.pdf", pdf()),
        "docx": ("letter.docx", ooxml("docx")),
        "xlsx": ("numbers.xlsx", ooxml("xlsx")),
        "pptx": ("slides.pptx", ooxml("pptx")),
        "txt": ("notes.txt", "Grüße aus Köln\n".encode()),
        "md": ("readme.md", b"# Title\n\n* item\n"),
        "csv": ("table.csv", b"a,b\n1,2\n"),
        "json": ("data.json", b'{"a": [1, 2]}\n'),
        "png": ("pixel.png", png()),
        "jpeg": ("photo.jpg", jpeg()),
    }


def high_ratio_docx(size: int = 8 * 1024 * 1024) -> bytes:
    return ooxml("docx", extra={"word/media/blob.xml": b"\x00" * size})


def many_entries_docx(count: int) -> bytes:
    return ooxml("docx", extra={f"word/e{i}.xml": b"<a/>" for i in range(count)})


def nested_zip_docx(disguised: bool = False) -> bytes:
    inner = plain_zip({"x.txt": b"x"})
    name = "word/media/image1.png" if disguised else "word/embeddings/inner.zip"
    return ooxml("docx", extra={name: inner})


def raw_zip(
    entries: list[tuple[str, bytes, int, int, int]], offsets: list[int] | None = None
) -> bytes:
    """A zip written byte by byte, so that headers can lie: (name, stored data, method,
    declared uncompressed size, declared CRC) per entry; ``offsets`` overrides where each
    central directory record says its entry starts."""
    body = bytearray()
    central = bytearray()
    for index, (name, data, method, size, crc) in enumerate(entries):
        offset = len(body)
        raw = name.encode()
        body += struct.pack(
            "<4s2B4HL2L2H", b"PK\x03\x04", 20, 0, 0, method, 0, 0, crc, len(data), size, len(raw), 0
        )
        body += raw + data
        where = offsets[index] if offsets else offset
        central += struct.pack(
            "<4s4B4HL2L5HLL",
            b"PK\x01\x02",
            20,
            0,
            20,
            0,
            0,
            method,
            0,
            0,
            crc,
            len(data),
            size,
            len(raw),
            0,
            0,
            0,
            0,
            0,
            where,
        )
        central += raw
    end = struct.pack(
        "<4s4H2LH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(central), len(body), 0
    )
    return bytes(body + central + end)


def deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()
