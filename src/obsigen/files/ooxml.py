"""Zip containers (DOCX, XLSX, PPTX) checked before anyone opens them.

Declared sizes in a zip are the attacker's word, so every entry is inflated here, bounded,
and compared with what the central directory claims. In order:

1. the end record's entry count and directory size (before ``zipfile`` builds its index);
2. per entry: no encryption, only stored/deflate, a safe relative path, no duplicates, the
   local header agrees with the directory, entries do not overlap (the non-recursive bomb),
   declared total and per-entry ratio within limits;
3. per entry, inflated: never more than declared, exact size and CRC, no zip inside (by name
   or by content);
4. the OOXML package: ``[Content_Types].xml`` without a DTD, exactly one main part of a
   known kind that exists, no macros.
"""

from __future__ import annotations

import re
import struct
import unicodedata
import xml.etree.ElementTree as ET
import zipfile
import zlib
from dataclasses import dataclass
from typing import BinaryIO

from obsigen.files.errors import UnsafeArchive, UnsupportedFile

_READ = 64 * 1024
_CONTENT_TYPES = "[Content_Types].xml"
_CONTENT_TYPES_MAX = 1024 * 1024
_CT_NS = "{http://schemas.openxmlformats.org/package/2006/content-types}"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
_ARCHIVE_NAME = re.compile(
    r"\.(zip|jar|war|apk|7z|rar|gz|tgz|bz2|xz|zst|tar|cab|docx|docm|xlsx|xlsm|xlsb|pptx|pptm|"
    r"odt|ods|odp|epub)$",
    re.IGNORECASE,
)
_EOCD = b"PK\x05\x06"
_EOCD_SIZE = 22
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")

MAIN_TYPES: dict[str, str] = {
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml": "docx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml": "xlsx",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation.main+xml": "pptx",
}
# Central directory bytes allowed per entry before zipfile is let loose on it.
_DIRECTORY_BYTES_PER_ENTRY = 512


@dataclass(frozen=True, slots=True)
class ZipLimits:
    max_entries: int = 5000
    max_total_uncompressed: int = 512 * 1024 * 1024
    max_ratio: int = 100
    # Small entries may compress well without being a threat; the total limit covers them.
    ratio_floor: int = 100 * 1024


def ooxml_kind(handle: BinaryIO, limits: ZipLimits) -> str | None:
    """``docx``/``xlsx``/``pptx`` for a safe OOXML package, None for any other safe zip;
    raises UnsafeArchive (limits, structure) or UnsupportedFile (macros)."""
    _check_end_record(handle, limits)
    try:
        archive = zipfile.ZipFile(handle)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError) as exc:
        raise UnsafeArchive(f"not a readable zip: {exc}") from None
    with archive:
        infos = archive.infolist()
        content_types = _check_entries(handle, infos, limits)
    if content_types is None:
        return None
    return _package_kind(content_types, {info.filename for info in infos})


def _check_end_record(handle: BinaryIO, limits: ZipLimits) -> None:
    handle.seek(0, 2)
    size = handle.tell()
    tail_len = min(size, _EOCD_SIZE + 0xFFFF)
    handle.seek(size - tail_len)
    tail = handle.read(tail_len)
    at = tail.rfind(_EOCD)
    if at < 0 or len(tail) - at < _EOCD_SIZE:
        raise UnsafeArchive("not a zip: no end of central directory")
    entries, directory_size = struct.unpack("<HL", tail[at + 10 : at + 16])
    if entries != 0xFFFF and entries > limits.max_entries:
        raise UnsafeArchive(f"too many entries ({entries} > {limits.max_entries})")
    if (
        directory_size != 0xFFFFFFFF
        and directory_size > limits.max_entries * _DIRECTORY_BYTES_PER_ENTRY
    ):
        raise UnsafeArchive("central directory too large")


def _check_name(name: str) -> None:
    parts = name.split("/")
    if (
        not name
        or name.startswith("/")
        or "\\" in name
        or ":" in parts[0]
        or any(part in ("..", ".") for part in parts)
        or any(unicodedata.category(ch) in ("Cc", "Cf") for ch in name)
    ):
        raise UnsafeArchive(f"entry with an unsafe path: {name!r}")
    if _ARCHIVE_NAME.search(name):
        raise UnsafeArchive(f"nested archive: {name!r}")


def _check_entries(
    handle: BinaryIO, infos: list[zipfile.ZipInfo], limits: ZipLimits
) -> bytes | None:
    if len(infos) > limits.max_entries:
        raise UnsafeArchive(f"too many entries ({len(infos)} > {limits.max_entries})")
    if not infos or min(info.header_offset for info in infos) != 0:
        # Bytes before the first entry make a polyglot (a PDF and a zip at once).
        raise UnsafeArchive("data before the first zip entry")
    seen: set[str] = set()
    declared_total = 0
    for info in infos:
        _check_name(info.filename)
        if info.filename in seen:
            raise UnsafeArchive(f"duplicate entry {info.filename!r}")
        seen.add(info.filename)
        if info.flag_bits & 0x1:
            raise UnsafeArchive("encrypted entries are not accepted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise UnsafeArchive(f"unsupported compression in {info.filename!r}")
        declared_total += info.file_size
        if declared_total > limits.max_total_uncompressed:
            raise UnsafeArchive("uncompressed size exceeds the limit")
        if info.file_size >= limits.ratio_floor and info.file_size > limits.max_ratio * max(
            info.compress_size, 1
        ):
            raise UnsafeArchive(f"compression ratio of {info.filename!r} exceeds the limit")

    content_types: bytes | None = None
    end_of_previous = 0
    for info in sorted(infos, key=lambda i: i.header_offset):
        if info.header_offset < end_of_previous:
            raise UnsafeArchive("overlapping zip entries")
        data_start = _data_start(handle, info)
        end_of_previous = data_start + info.compress_size
        keep = info.filename == _CONTENT_TYPES
        if keep and info.file_size > _CONTENT_TYPES_MAX:
            raise UnsafeArchive("[Content_Types].xml too large")
        data = _inflate(handle, info, data_start, keep)
        if keep:
            content_types = data
    return content_types


def _data_start(handle: BinaryIO, info: zipfile.ZipInfo) -> int:
    handle.seek(info.header_offset)
    header = handle.read(_LOCAL_HEADER.size)
    if len(header) != _LOCAL_HEADER.size:
        raise UnsafeArchive("truncated zip entry")
    fields = _LOCAL_HEADER.unpack(header)
    if fields[0] != b"PK\x03\x04":
        raise UnsafeArchive("bad local header")
    name_len, extra_len = int(fields[10]), int(fields[11])
    raw_name = handle.read(name_len)
    encoding = "utf-8" if info.flag_bits & 0x800 else "cp437"
    if raw_name.decode(encoding, errors="replace") != info.orig_filename:
        # Two parsers would see two different names: one of them is being fooled.
        raise UnsafeArchive("local header and central directory disagree on a name")
    return info.header_offset + _LOCAL_HEADER.size + name_len + extra_len


def _inflate(handle: BinaryIO, info: zipfile.ZipInfo, start: int, keep: bool) -> bytes:
    handle.seek(start)
    remaining = info.compress_size
    inflater = zlib.decompressobj(-15) if info.compress_type == zipfile.ZIP_DEFLATED else None
    produced = 0
    crc = 0
    head = b""
    kept: list[bytes] = []
    allowance = info.file_size + 1  # one byte more than declared proves the lie

    def take(out: bytes) -> None:
        nonlocal produced, crc, head
        produced += len(out)
        if produced > info.file_size:
            raise UnsafeArchive(f"{info.filename!r} inflates beyond its declared size")
        crc = zlib.crc32(out, crc)
        if len(head) < 4:
            head = (head + out)[:4]
        if keep:
            kept.append(out)

    while remaining > 0:
        chunk = handle.read(min(_READ, remaining))
        if not chunk:
            raise UnsafeArchive("truncated zip entry")
        remaining -= len(chunk)
        if inflater is None:
            take(chunk)
            continue
        try:
            out = inflater.decompress(chunk, allowance - produced)
            take(out)
            while inflater.unconsumed_tail:
                out = inflater.decompress(inflater.unconsumed_tail, allowance - produced)
                if not out:
                    raise UnsafeArchive(f"corrupt data in {info.filename!r}")
                take(out)
        except zlib.error:
            raise UnsafeArchive(f"corrupt data in {info.filename!r}") from None
    # No flush(): it inflates whatever is pending without a bound. A complete stream has
    # produced all of its output above.
    if inflater is not None and not inflater.eof:
        raise UnsafeArchive(f"truncated data in {info.filename!r}")
    if produced != info.file_size or crc != info.CRC:
        raise UnsafeArchive(f"{info.filename!r} does not match its declared size or checksum")
    if head.startswith(_ZIP_MAGICS):
        raise UnsafeArchive(f"nested archive: {info.filename!r}")
    return b"".join(kept)


def _package_kind(content_types: bytes, names: set[str]) -> str | None:
    upper = content_types.upper()
    if b"<!DOCTYPE" in upper or b"<!ENTITY" in upper:
        raise UnsafeArchive("[Content_Types].xml declares a DTD")
    try:
        # No DTD (refused above) means no entity expansion for expat: defusedxml's threats
        # (billion laughs, external entities) cannot arise.
        root = ET.fromstring(content_types)  # noqa: S314
    except ET.ParseError:
        raise UnsafeArchive("[Content_Types].xml is not well-formed") from None
    overrides: dict[str, str] = {}
    declared: list[str] = []
    for element in root:
        content_type = element.get("ContentType", "").strip().lower()
        declared.append(content_type)
        if element.tag == f"{_CT_NS}Override":
            overrides[element.get("PartName", "").lstrip("/")] = content_type
    if any("macroenabled" in ct or "vbaproject" in ct for ct in declared) or any(
        name.lower().endswith("vbaproject.bin") for name in names
    ):
        raise UnsupportedFile("documents with macros are not accepted")
    mains = [(part, MAIN_TYPES[ct]) for part, ct in overrides.items() if ct in MAIN_TYPES]
    if len(mains) != 1:
        return None
    part, kind = mains[0]
    return kind if part in names else None
