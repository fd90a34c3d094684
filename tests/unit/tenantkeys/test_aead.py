"""The ciphers without I/O: round trips, and every swap or cut refused."""

from __future__ import annotations

import os

import pytest

from obsigen.tenantkeys import aead
from obsigen.tenantkeys.errors import CiphertextInvalid

DEK = os.urandom(32)
OTHER = os.urandom(32)
BINDING = b"tenant-a\x00object-1"


def aad(tenant: str = "ta", row: str = "r1", column: str = "content") -> bytes:
    return aead.text_aad(tenant, "messages", column, row, 1)


def test_text_round_trip_and_fresh_nonces() -> None:
    first = aead.seal_text(DEK, 1, "Grüße, secret plan", aad())
    second = aead.seal_text(DEK, 1, "Grüße, secret plan", aad())
    assert first != second  # random nonce per seal
    assert first.startswith("obs1:1:")
    assert "secret" not in first
    assert aead.open_text(DEK, first, aad()) == "Grüße, secret plan"


@pytest.mark.parametrize(
    "other_aad",
    [aad(tenant="tb"), aad(row="r2"), aad(column="error")],
    ids=["other-tenant", "other-row", "other-column"],
)
def test_text_moved_elsewhere_is_refused(other_aad: bytes) -> None:
    sealed = aead.seal_text(DEK, 1, "hello", aad())
    with pytest.raises(CiphertextInvalid):
        aead.open_text(DEK, sealed, other_aad)


def test_text_wrong_key_or_tampered_is_refused() -> None:
    sealed = aead.seal_text(DEK, 1, "hello", aad())
    with pytest.raises(CiphertextInvalid):
        aead.open_text(OTHER, sealed, aad())
    head, body = sealed.rsplit(":", 1)
    flipped = body[:-3] + ("A" if body[-3] != "A" else "B") + body[-2:]
    with pytest.raises(CiphertextInvalid):
        aead.open_text(DEK, f"{head}:{flipped}", aad())
    for broken in ("obs1:1:not base64!", "obs1:1:", "obs1:1:AAAA"):
        with pytest.raises(CiphertextInvalid):
            aead.open_text(DEK, broken, aad())
    for broken in ("obs1:x:AAAA", "obs1:0:AAAA", "obs1"):
        with pytest.raises(CiphertextInvalid):
            aead.envelope_version(broken)


def seal_stream(data: bytes, piece: int = 10_000, binding: bytes = BINDING) -> bytes:
    enc = aead.SegmentEncryptor(DEK, 3, binding)
    out = bytearray()
    for start in range(0, len(data), piece):
        out += enc.update(data[start : start + piece])
    out += enc.finalize()
    return bytes(out)


def open_stream(
    blob: bytes, piece: int = 7_777, binding: bytes = BINDING, plain: bool = False
) -> bytes:
    dec = aead.SegmentDecryptor({3: DEK}, binding, allow_plaintext=plain)
    out = bytearray()
    for start in range(0, len(blob), piece):
        out += dec.update(blob[start : start + piece])
    out += dec.finalize()
    return bytes(out)


SEG = aead.SEGMENT
SEALED_SEG = SEG + aead.TAG_BYTES


@pytest.mark.parametrize("size", [0, 1, SEG - 1, SEG, SEG + 1, 3 * SEG, 3 * SEG + 5])
def test_stream_round_trip(size: int) -> None:
    data = os.urandom(size)
    blob = seal_stream(data)
    assert aead.header_version(blob) == 3
    segments = max(1, -(-size // SEG))  # the last segment may be full, never empty but at 0
    assert len(blob) == aead.HEADER_BYTES + size + segments * aead.TAG_BYTES
    assert open_stream(blob) == data


def test_stream_truncated_at_a_segment_boundary_is_refused() -> None:
    blob = seal_stream(os.urandom(3 * SEG + 5))
    cut = blob[: aead.HEADER_BYTES + 2 * SEALED_SEG]
    with pytest.raises(CiphertextInvalid):
        open_stream(cut)
    with pytest.raises(CiphertextInvalid):
        open_stream(blob[:-1])
    with pytest.raises(CiphertextInvalid):
        open_stream(blob[: aead.HEADER_BYTES - 1])


def test_stream_reordered_or_duplicated_segments_are_refused() -> None:
    blob = seal_stream(os.urandom(3 * SEG + 5))
    head, body = blob[: aead.HEADER_BYTES], blob[aead.HEADER_BYTES :]
    seg0, seg1 = body[:SEALED_SEG], body[SEALED_SEG : 2 * SEALED_SEG]
    rest = body[2 * SEALED_SEG :]
    with pytest.raises(CiphertextInvalid):
        open_stream(head + seg1 + seg0 + rest)
    with pytest.raises(CiphertextInvalid):
        open_stream(head + seg0 + seg0 + rest)


def test_stream_bound_to_its_object_and_header() -> None:
    blob = seal_stream(b"quarterly numbers")
    with pytest.raises(CiphertextInvalid):
        open_stream(blob, binding=b"tenant-a\x00object-2")
    tampered = bytearray(blob)
    tampered[len(aead.MAGIC) + 6] ^= 1  # inside the salt
    with pytest.raises(CiphertextInvalid):
        open_stream(bytes(tampered))


def test_stream_with_unknown_version_is_refused() -> None:
    blob = seal_stream(b"x")
    dec = aead.SegmentDecryptor({4: DEK}, BINDING, allow_plaintext=True)
    with pytest.raises(CiphertextInvalid, match="unknown or destroyed"):
        dec.update(blob)


def test_legacy_plaintext_only_when_allowed() -> None:
    legacy = b"plain text written before encryption was on" * 100
    assert open_stream(legacy, plain=True) == legacy
    assert open_stream(b"", plain=True) == b""
    with pytest.raises(CiphertextInvalid, match="not encrypted"):
        open_stream(legacy, plain=False)
