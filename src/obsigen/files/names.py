"""File names from uploads, made safe to store, list and send back in a header.

The name is only ever a label (objects are stored under generated ids), but it is shown to
people and written into ``Content-Disposition``: directory parts, control and bidi
characters (the ``invoice\u202efdp.exe`` trick), characters that are reserved on common
file systems and Windows device names are all removed or replaced.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

MAX_NAME_BYTES = 255
FALLBACK_NAME = "upload"

# Cc: controls, Cf: format (bidi overrides and isolates, zero-width joiners, soft hyphen),
# Cs: lone surrogates, Co: private use, Cn: unassigned, Zl/Zp: line and paragraph separators.
_DROPPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_RESERVED = re.compile(r'[<>:"|?*]')
_SPACES = re.compile(r"\s+")
_WINDOWS_DEVICES = frozenset(
    {"con", "prn", "aux", "nul"}
    | {f"com{i}" for i in range(1, 10)}
    | {f"lpt{i}" for i in range(1, 10)}
)


def sanitise_filename(raw: str) -> str:
    name = unicodedata.normalize("NFC", raw)
    # Whatever directories the client sent (either separator) are dropped, ".." included.
    name = re.split(r"[/\\]", name)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch) not in _DROPPED_CATEGORIES)
    name = _RESERVED.sub("_", name)
    name = _SPACES.sub(" ", name)
    # Leading dots would make a hidden file or a "..", trailing ones vanish on Windows.
    name = name.strip(" .")
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    if stem.split(".")[0].lower() in _WINDOWS_DEVICES:
        name = "_" + name
    name = _truncate(name, ext)
    return name or FALLBACK_NAME


def _truncate(name: str, ext: str) -> str:
    if len(name.encode()) <= MAX_NAME_BYTES:
        return name
    suffix = f".{ext}" if ext and len(ext.encode()) < 32 else ""
    budget = MAX_NAME_BYTES - len(suffix.encode())
    stem = name[: len(name) - len(suffix)] if suffix else name
    encoded = stem.encode()[:budget]
    # Cutting bytes may split a character; drop the broken tail rather than keep garbage.
    return encoded.decode(errors="ignore").rstrip(" .") + suffix


def extension_of(name: str) -> str:
    _, dot, ext = name.rpartition(".")
    return ext.lower() if dot else ""


def content_disposition(name: str, disposition: str = "attachment") -> str:
    """RFC 6266: an ASCII fallback for old clients and the exact name as ``filename*``."""
    ascii_name = "".join(ch if 0x20 <= ord(ch) < 0x7F and ch not in '"\\%' else "_" for ch in name)
    return f"{disposition}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"
