"""The ciphers under tenant encryption, without I/O: text envelopes and segmented streams.

Text (message bodies, chunk text): ``obs1:<key version>:<base64(nonce || ciphertext+tag)>``,
AES-256-GCM with a random 96-bit nonce. The associated data names the tenant, the table, the
column and the row, so a ciphertext copied to another row, column or tenant is refused.

Objects: a header, then segments of ``SEGMENT`` plaintext bytes (the last may be shorter or
empty), each sealed on its own. Header: magic, key version, a random salt and nonce prefix.
The per-object key is HKDF(DEK, salt, info = tenant and object id), so objects never share a
GCM key and an object moved under another key name does not open. A segment's nonce is
``prefix || counter || last-flag``: reordered, dropped, duplicated or truncated segments fail
authentication (the STREAM construction of Hoang, Reyhanitabar, Rogaway and Vizár).
"""

from __future__ import annotations

import base64
import binascii
import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from obsigen.tenantkeys.errors import CiphertextInvalid

DEK_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
TEXT_PREFIX = "obs1:"

SEGMENT = 64 * 1024
MAGIC = b"\x89OBSENC\x01"
_SALT_BYTES = 16
_PREFIX_BYTES = 7
HEADER_BYTES = len(MAGIC) + 4 + _SALT_BYTES + _PREFIX_BYTES
_SEALED_SEGMENT = SEGMENT + TAG_BYTES
_MAX_SEGMENTS = 2**32 - 1


def text_aad(tenant_id: str, table: str, column: str, row_id: str, version: int) -> bytes:
    parts = ("obsigen-text-v1", tenant_id, table, column, row_id, str(version))
    return "\x00".join(parts).encode("utf-8")


def is_envelope(value: str) -> bool:
    return value.startswith(TEXT_PREFIX)


def envelope_version(value: str) -> int:
    """The key version an envelope was sealed with (CiphertextInvalid when malformed)."""
    try:
        _, version, _ = value.split(":", 2)
        parsed = int(version)
    except ValueError:
        raise CiphertextInvalid("malformed ciphertext envelope") from None
    if parsed < 1:
        raise CiphertextInvalid("malformed ciphertext envelope")
    return parsed


def seal_text(dek: bytes, version: int, plaintext: str, aad: bytes) -> str:
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(dek).encrypt(nonce, plaintext.encode("utf-8"), aad)
    return f"{TEXT_PREFIX}{version}:{base64.b64encode(nonce + sealed).decode('ascii')}"


def open_text(dek: bytes, envelope: str, aad: bytes) -> str:
    try:
        raw = base64.b64decode(envelope.split(":", 2)[2], validate=True)
    except (IndexError, binascii.Error):
        raise CiphertextInvalid("malformed ciphertext envelope") from None
    if len(raw) < NONCE_BYTES + TAG_BYTES:
        raise CiphertextInvalid("malformed ciphertext envelope")
    try:
        plain = AESGCM(dek).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], aad)
    except InvalidTag:
        raise CiphertextInvalid("ciphertext does not authenticate for this row") from None
    return plain.decode("utf-8")


def _object_key(dek: bytes, salt: bytes, binding: bytes) -> AESGCM:
    derived = HKDF(
        algorithm=hashes.SHA256(), length=DEK_BYTES, salt=salt, info=b"obsigen-object-v1" + binding
    ).derive(dek)
    return AESGCM(derived)


def _nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    if counter > _MAX_SEGMENTS:
        raise CiphertextInvalid("object too large for one stream")
    return prefix + struct.pack(">I", counter) + (b"\x01" if last else b"\x00")


class SegmentEncryptor:
    """``update``/``finalize`` over plaintext chunks; holds at most one segment in memory."""

    def __init__(self, dek: bytes, version: int, binding: bytes) -> None:
        salt, self._prefix = os.urandom(_SALT_BYTES), os.urandom(_PREFIX_BYTES)
        self._header = MAGIC + struct.pack(">I", version) + salt + self._prefix
        self._aead = _object_key(dek, salt, binding)
        self._buffer = bytearray()
        self._counter = 0
        self._started = False

    def _seal(self, data: bytes, last: bool) -> bytes:
        out = self._aead.encrypt(_nonce(self._prefix, self._counter, last), data, self._header)
        self._counter += 1
        return out

    def update(self, data: bytes) -> bytes:
        out = bytearray()
        if not self._started:
            self._started = True
            out += self._header
        self._buffer += data
        # Strictly more than a segment: the last segment must wait for finalize to be flagged.
        while len(self._buffer) > SEGMENT:
            out += self._seal(bytes(self._buffer[:SEGMENT]), last=False)
            del self._buffer[:SEGMENT]
        return bytes(out)

    def finalize(self) -> bytes:
        head = b"" if self._started else self._header
        self._started = True
        tail = self._seal(bytes(self._buffer), last=True)
        self._buffer.clear()
        return head + tail


def header_version(header: bytes) -> int | None:
    """The key version in an object header, or None when the bytes are not one of ours."""
    if len(header) < HEADER_BYTES or not header.startswith(MAGIC):
        return None
    return int(struct.unpack(">I", header[len(MAGIC) : len(MAGIC) + 4])[0])


class SegmentDecryptor:
    """Reverse of :class:`SegmentEncryptor`; ``keys`` maps version -> DEK for this tenant.

    ``allow_plaintext``: an object without our header is returned as it is (objects written
    before encryption was turned on); otherwise it is refused.
    """

    def __init__(self, keys: dict[int, bytes], binding: bytes, *, allow_plaintext: bool) -> None:
        self._keys = keys
        self._binding = binding
        self._allow_plaintext = allow_plaintext
        self._buffer = bytearray()
        self._mode: str | None = None  # "sealed" | "plain"
        self._aead: AESGCM | None = None
        self._header = b""
        self._prefix = b""
        self._counter = 0

    def _start(self) -> None:
        head = bytes(self._buffer[:HEADER_BYTES])
        if not head.startswith(MAGIC[: len(head)]) or (
            len(head) == HEADER_BYTES and header_version(head) is None
        ):
            if not self._allow_plaintext:
                raise CiphertextInvalid("object is not encrypted under a tenant key")
            self._mode = "plain"
            return
        if len(head) < HEADER_BYTES:
            return  # wait for the whole header
        version = header_version(head)
        assert version is not None
        dek = self._keys.get(version)
        if dek is None:
            raise CiphertextInvalid(f"object sealed with unknown or destroyed key v{version}")
        salt = head[len(MAGIC) + 4 : len(MAGIC) + 4 + _SALT_BYTES]
        self._prefix = head[-_PREFIX_BYTES:]
        self._header = head
        self._aead = _object_key(dek, salt, self._binding)
        self._mode = "sealed"
        del self._buffer[:HEADER_BYTES]

    def _open(self, data: bytes, last: bool) -> bytes:
        assert self._aead is not None
        try:
            out = self._aead.decrypt(_nonce(self._prefix, self._counter, last), data, self._header)
        except InvalidTag:
            raise CiphertextInvalid("object segment does not authenticate") from None
        self._counter += 1
        return out

    def update(self, data: bytes) -> bytes:
        self._buffer += data
        if self._mode is None:
            self._start()
        if self._mode == "plain":
            out = bytes(self._buffer)
            self._buffer.clear()
            return out
        if self._mode is None:
            return b""
        opened = bytearray()
        while len(self._buffer) > _SEALED_SEGMENT:
            opened += self._open(bytes(self._buffer[:_SEALED_SEGMENT]), last=False)
            del self._buffer[:_SEALED_SEGMENT]
        return bytes(opened)

    def finalize(self) -> bytes:
        if self._mode is None:
            if not self._buffer and self._allow_plaintext:
                return b""
            # A stream shorter than a header: legacy plaintext, or a cut-off object.
            self._start()
            if self._mode != "plain":
                raise CiphertextInvalid("object is truncated")
        if self._mode == "plain":
            out = bytes(self._buffer)
            self._buffer.clear()
            return out
        if len(self._buffer) < TAG_BYTES:
            raise CiphertextInvalid("object is truncated")
        out = self._open(bytes(self._buffer), last=True)
        self._buffer.clear()
        return out
