"""Object stores behind one interface, and the encryption hook every store applies.

A store holds opaque objects under ``ObjectKey(tenant_id, object_id)``. Both parts are
restricted to ``[A-Za-z0-9_-]``, so a key can never name a path outside its tenant's area,
whatever the backend makes of it. Size and SHA-256 are computed over the plaintext as it
streams past; what reaches the backend is the output of the encryption hook.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from obsigen.errors import NotFound

_KEY_PART = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

# Streams are read and written in pieces of this size: large enough to keep per-chunk
# overhead (thread hops, syscalls) low, small enough that nothing holds a whole file.
CHUNK_SIZE = 256 * 1024


class ObjectNotFound(NotFound):
    pass


@dataclass(frozen=True, slots=True)
class ObjectKey:
    tenant_id: str
    object_id: str

    def __post_init__(self) -> None:
        for part in (self.tenant_id, self.object_id):
            if not _KEY_PART.fullmatch(part):
                raise ValueError(f"invalid object key part {part!r}")

    def __str__(self) -> str:
        return f"{self.tenant_id}/{self.object_id}"

    @classmethod
    def parse(cls, value: str) -> ObjectKey:
        tenant_id, sep, object_id = value.partition("/")
        if not sep:
            raise ValueError(f"invalid object key {value!r}")
        return cls(tenant_id, object_id)


@dataclass(frozen=True, slots=True)
class PutResult:
    size: int
    sha256: str


class ChunkTransform(Protocol):
    """A streaming cipher: ``update`` per chunk, ``finalize`` once at the end."""

    def update(self, data: bytes) -> bytes: ...

    def finalize(self) -> bytes: ...


class EncryptionHook(Protocol):
    """Encryption at rest. Keys carry the tenant, so an implementation can use the tenant's
    own key (envelope encryption, crypto-shredding); the default stores plaintext."""

    def encryptor(self, key: ObjectKey) -> ChunkTransform: ...

    def decryptor(self, key: ObjectKey) -> ChunkTransform: ...


class AsyncEncryptionHook(Protocol):
    """An encryption hook whose keys need I/O to find (a tenant's data key in the database,
    unwrapped by a KMS or HSM): the stores await these instead of the synchronous pair."""

    async def open_encryptor(self, key: ObjectKey) -> ChunkTransform: ...

    async def open_decryptor(self, key: ObjectKey) -> ChunkTransform: ...


AnyEncryptionHook = EncryptionHook | AsyncEncryptionHook


async def open_encryptor(hook: AnyEncryptionHook, key: ObjectKey) -> ChunkTransform:
    if hasattr(hook, "open_encryptor"):
        return await hook.open_encryptor(key)
    assert hasattr(hook, "encryptor")
    return hook.encryptor(key)


async def open_decryptor(hook: AnyEncryptionHook, key: ObjectKey) -> ChunkTransform:
    if hasattr(hook, "open_decryptor"):
        return await hook.open_decryptor(key)
    assert hasattr(hook, "decryptor")
    return hook.decryptor(key)


class _Identity:
    def update(self, data: bytes) -> bytes:
        return data

    def finalize(self) -> bytes:
        return b""


class IdentityEncryption:
    def encryptor(self, key: ObjectKey) -> ChunkTransform:
        return _Identity()

    def decryptor(self, key: ObjectKey) -> ChunkTransform:
        return _Identity()


class ObjectStore(Protocol):
    async def put_stream(self, key: ObjectKey, chunks: AsyncIterable[bytes]) -> PutResult:
        """Store the stream under ``key`` (replacing any object there) and return the size and
        SHA-256 of the plaintext. The object appears only once the stream ended without an
        error; when ``chunks`` raises, nothing is left behind and the error propagates."""
        ...

    async def get_stream(self, key: ObjectKey) -> AsyncIterator[bytes]:
        """Open ``key`` (ObjectNotFound when absent) and return its plaintext in chunks."""
        ...

    async def delete(self, key: ObjectKey) -> None:
        """Remove the object for good; absent objects are no error."""
        ...

    async def exists(self, key: ObjectKey) -> bool: ...

    async def aclose(self) -> None: ...


class _Digest:
    def __init__(self) -> None:
        self.size = 0
        self._hash = hashlib.sha256()

    def add(self, data: bytes) -> None:
        self.size += len(data)
        self._hash.update(data)

    def result(self) -> PutResult:
        return PutResult(self.size, self._hash.hexdigest())


async def sealed(
    chunks: AsyncIterable[bytes], transform: ChunkTransform, digest: _Digest
) -> AsyncIterator[bytes]:
    """The ciphertext of ``chunks``, hashing the plaintext on the way."""
    async for chunk in chunks:
        if not chunk:
            continue
        digest.add(chunk)
        out = transform.update(chunk)
        if out:
            yield out
    tail = transform.finalize()
    if tail:
        yield tail


def new_digest() -> _Digest:
    return _Digest()


async def unsealed(raw: AsyncIterator[bytes], transform: ChunkTransform) -> AsyncIterator[bytes]:
    """The plaintext of a stored object's raw chunks."""
    async for chunk in raw:
        out = transform.update(chunk)
        if out:
            yield out
    tail = transform.finalize()
    if tail:
        yield tail
