"""The streaming multipart reader: the file part found and streamed, everything else bounded."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from obsigen.files.multipart_stream import (
    MAX_FIELD_BYTES,
    MAX_PARTS,
    MalformedMultipart,
    MultipartFileStream,
    boundary_of,
)

B = b"bnd42"


def part(headers: str, data: bytes) -> bytes:
    return b"--" + B + b"\r\n" + headers.encode() + b"\r\n\r\n" + data + b"\r\n"


async def pieces(body: bytes, size: int = 5) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


async def read(body: bytes) -> tuple[str, bytes]:
    stream = MultipartFileStream(pieces(body), B)
    name = await stream.find_file("file")
    return name, b"".join([chunk async for chunk in stream.data()])


def test_boundary_only_from_multipart_form_data() -> None:
    assert boundary_of("multipart/form-data; boundary=bnd42") == B
    assert boundary_of("application/json") is None
    assert boundary_of("multipart/form-data") is None


async def test_file_part_after_a_field_is_streamed() -> None:
    body = (
        part('Content-Disposition: form-data; name="purpose"', b"notes")
        + part('Content-Disposition: form-data; name="file"; filename="a.txt"', b"x\r\n--y" * 50)
        + b"--"
        + B
        + b"--\r\n"
    )
    assert await read(body) == ("a.txt", b"x\r\n--y" * 50)


async def test_rfc5987_file_name_wins() -> None:
    headers = (
        'Content-Disposition: form-data; name="file"; filename="r_sum_.txt"; '
        "filename*=UTF-8''r%C3%A9sum%C3%A9.txt"
    )
    body = part(headers, b"x") + b"--" + B + b"--\r\n"
    assert (await read(body))[0] == "résumé.txt"


async def test_raw_utf8_file_name() -> None:
    body = part('Content-Disposition: form-data; name="file"; filename="ü.txt"', b"x")
    assert (await read(body + b"--" + B + b"--\r\n"))[0] == "ü.txt"


@pytest.mark.parametrize(
    "body",
    [
        part('Content-Disposition: form-data; name="other"; filename="a.txt"', b"x")
        + b"--"
        + B
        + b"--\r\n",
        b"".join(
            part(f'Content-Disposition: form-data; name="f{i}"', b"v") for i in range(MAX_PARTS + 1)
        ),
        part('Content-Disposition: form-data; name="big"', b"v" * (MAX_FIELD_BYTES + 1)),
        part('Content-Disposition: form-data; name="file"; filename="a.txt"', b"cut off"),
        b"no multipart here at all",
    ],
)
async def test_malformed_or_unbounded_bodies_are_refused(body: bytes) -> None:
    with pytest.raises(MalformedMultipart):
        await read(body)
