"""What comes back from /output: regular files of allowed types, within limits."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import pytest

from obsigen.sandbox.artifacts import collect, sniff
from obsigen.sandbox.interfaces import Limits

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


def office(part: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr(f"{part}/document.xml", "<x/>")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        ("chart.png", PNG, "image/png"),
        ("chart.txt", PNG, "image/png"),  # content decides, not the name
        ("photo.jpg", b"\xff\xd8\xff\xe0rest", "image/jpeg"),
        ("doc.pdf", b"%PDF-1.7\n...", "application/pdf"),
        ("table.csv", b"a,b\n1,2\n", "text/csv"),
        ("data.json", b'{"a": 1}', "application/json"),
        ("notes.txt", "héllo\n".encode(), "text/plain"),
        ("deck.pptx", office("ppt"), "application/vnd.openxmlformats-officedocument."
         "presentationml.presentation"),
        ("sheet.xlsx", office("xl"), "application/vnd.openxmlformats-officedocument."
         "spreadsheetml.sheet"),
    ],
)  # fmt: skip
def test_allowed_types_are_recognised_by_content(name: str, data: bytes, expected: str) -> None:
    assert sniff(name, data) == expected


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("page.html", b"<!DOCTYPE html><script>alert(1)</script>"),
        ("page.txt", b"<html><body>x</body></html>"),
        ("image.svg", b'<svg xmlns="http://www.w3.org/2000/svg"><script/></svg>'),
        ("prog.bin", b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 16),
        ("archive.zip", b"PK\x03\x04not really a zip"),
        ("term.txt", b"colour \x1b[31mred"),
    ],
)
def test_other_types_are_refused(name: str, data: bytes) -> None:
    assert sniff(name, data) is None


def test_collect_keeps_regular_files_and_says_why_others_stay(tmp_path: Path) -> None:
    out = tmp_path / "output"
    (out / "sub").mkdir(parents=True)
    (out / "chart.png").write_bytes(PNG)
    (out / "sub" / "table.csv").write_text("a\n1\n")
    (out / "page.html").write_text("<html></html>")
    (out / "big.txt").write_text("x" * 200)
    (out / "link.txt").symlink_to("/etc/hostname")
    os.mkfifo(out / "pipe")
    limits = Limits(artifact_bytes=100)

    found, rejected = collect(out, limits)

    assert {a.name: a.media_type for a in found} == {
        "chart.png": "image/png",
        "sub/table.csv": "text/csv",
    }
    reasons = dict(r.split(": ", 1) for r in rejected)
    assert reasons["page.html"] == "type not allowed"
    assert reasons["big.txt"] == "larger than 100 bytes"
    assert reasons["link.txt"].startswith("cannot open")  # never followed
    assert reasons["pipe"] == "not a regular file"


def test_collect_stops_at_the_count_limit(tmp_path: Path) -> None:
    for n in range(5):
        (tmp_path / f"f{n}.txt").write_text(str(n))

    found, rejected = collect(tmp_path, Limits(max_artifacts=3))

    assert [a.name for a in found] == ["f0.txt", "f1.txt", "f2.txt"]
    assert len(rejected) == 2
    assert all("more than 3 artifacts" in r for r in rejected)


def test_artifact_digest_and_size() -> None:
    from obsigen.sandbox.interfaces import Artifact

    artifact = Artifact("a.txt", "text/plain", b"abc")
    assert artifact.size == 3
    assert artifact.sha256 == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
