"""What a run left in /output, checked before it leaves the sandbox's directory.

Only regular files come back (no links, devices, FIFOs), within count and size limits, and only
types on an allow-list judged by content, never by the name the code chose. HTML and SVG are
not on the list: they can carry script into whatever displays them.
"""

from __future__ import annotations

import io
import os
import stat
import zipfile
from pathlib import Path

from obsigen.sandbox.interfaces import Artifact, Limits

MAX_DEPTH = 3
_TEXT_SUFFIXES = {".csv": "text/csv", ".json": "application/json", ".md": "text/markdown"}
_OFFICE = {
    "ppt/": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "xl/": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "word/": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
}


def _office_type(data: bytes) -> str | None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, ValueError, OSError):
        return None
    if "[Content_Types].xml" not in names:
        return None
    for prefix, media_type in _OFFICE.items():
        if any(name.startswith(prefix) for name in names):
            return media_type
    return None


def _is_text(data: bytes) -> bool:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return not any(ch in text for ch in "\x00\x1b")


def sniff(name: str, data: bytes) -> str | None:
    """The media type of ``data`` when it is an allowed kind, else None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data.startswith(b"%PDF-"):
        return "application/pdf"
    if data.startswith(b"PK\x03\x04"):
        return _office_type(data)
    if _is_text(data):
        lowered = data[:512].lstrip().lower()
        if lowered.startswith((b"<!doctype html", b"<html", b"<svg", b"<?xml")):
            return None
        return _TEXT_SUFFIXES.get(Path(name).suffix.lower(), "text/plain")
    return None


def _read_regular(path: Path, limit: int) -> bytes | str:
    """The file's bytes, or why not. O_NOFOLLOW: a link swapped in is refused, not followed."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        return f"cannot open ({exc.strerror})"
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            return "not a regular file"
        if info.st_size > limit:
            return f"larger than {limit} bytes"
        data = handle.read(limit + 1)
    if len(data) > limit:
        return f"larger than {limit} bytes"
    return data


def collect(output_dir: Path, limits: Limits) -> tuple[tuple[Artifact, ...], tuple[str, ...]]:
    """Artifacts under ``output_dir`` and "name: reason" for each file refused."""
    artifacts: list[Artifact] = []
    rejected: list[str] = []
    total = 0
    for directory, subdirs, names in os.walk(output_dir, followlinks=False):
        depth = len(Path(directory).relative_to(output_dir).parts)
        if depth >= MAX_DEPTH:
            subdirs.clear()
        for name in sorted(names):
            path = Path(directory) / name
            relative = path.relative_to(output_dir).as_posix()
            if len(artifacts) >= limits.max_artifacts:
                rejected.append(f"{relative}: more than {limits.max_artifacts} artifacts")
                continue
            data = _read_regular(path, limits.artifact_bytes)
            if isinstance(data, str):
                rejected.append(f"{relative}: {data}")
                continue
            media_type = sniff(name, data)
            if media_type is None:
                rejected.append(f"{relative}: type not allowed")
                continue
            if total + len(data) > limits.artifact_bytes * 2:
                rejected.append(f"{relative}: artifacts too large together")
                continue
            total += len(data)
            artifacts.append(Artifact(relative, media_type, data))
    return tuple(artifacts), tuple(rejected)
