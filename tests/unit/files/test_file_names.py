"""File names from uploads: traversal, control and bidi characters, reserved names, length."""

from __future__ import annotations

import pytest

from obsigen.files.names import (
    MAX_NAME_BYTES,
    content_disposition,
    extension_of,
    sanitise_filename,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("report.pdf", "report.pdf"),
        ("Grüße.txt", "Grüße.txt"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\system32\\cmd.exe", "cmd.exe"),
        ("/abs/path/x.csv", "x.csv"),
        ("..", "upload"),
        ("...", "upload"),
        ("", "upload"),
        (".bashrc", "bashrc"),
        ("a\x00b\x07c\n.txt", "abc.txt"),
        ("invoice\u202efdp.exe", "invoicefdp.exe"),
        ("report\u202e.pdf", "report.pdf"),
        ("x\u2066y\u2069\u200b.md", "xy.md"),
        ('a<b>c:"d|e?f*.txt', "a_b_c__d_e_f_.txt"),
        ("CON.txt", "_CON.txt"),
        ("nul", "_nul"),
        ("  spaced   out  .csv", "spaced out .csv"),
        ("trailing. . .", "trailing"),
    ],
)
def test_names_are_sanitised(raw: str, expected: str) -> None:
    assert sanitise_filename(raw) == expected


def test_bidi_trick_no_longer_hides_the_real_extension() -> None:
    # Displayed as "invoiceexe.pdf" by a bidi-aware renderer; really ends in .exe.
    assert extension_of(sanitise_filename("invoice\u202eexe.pdf")) == "pdf"
    assert extension_of(sanitise_filename("invoice\u202efdp.exe")) == "exe"


def test_long_names_are_cut_to_255_bytes_keeping_the_extension() -> None:
    name = sanitise_filename("ä" * 400 + ".docx")
    assert len(name.encode()) <= MAX_NAME_BYTES
    assert name.endswith(".docx")
    name.encode().decode()  # no split character


def test_content_disposition_is_header_safe() -> None:
    value = content_disposition('a"b\\ü%.pdf')
    assert value == ("attachment; filename=\"a_b___.pdf\"; filename*=UTF-8''a%22b%5C%C3%BC%25.pdf")
    assert "\r" not in content_disposition("x\r\nSet-Cookie: a=b")
