"""The object store's encryption hook: every object sealed under its tenant's DEK, streaming.

Key lookups are asynchronous (database, KEK provider), so this hook offers ``open_encryptor``
and ``open_decryptor``, which the stores await (``obsigen.files.stores.open_encryptor``); the
transforms themselves are synchronous and hold at most one 64 KiB segment.
"""

from __future__ import annotations

from obsigen.files.stores import ChunkTransform, ObjectKey
from obsigen.tenantkeys import aead
from obsigen.tenantkeys.keyring import TenantKeyring


def object_binding(key: ObjectKey) -> bytes:
    return f"{key.tenant_id}\x00{key.object_id}".encode("ascii")


class TenantObjectEncryption:
    def __init__(self, keyring: TenantKeyring, *, read_plaintext: bool = True) -> None:
        self.keyring = keyring
        self.read_plaintext = read_plaintext

    async def open_encryptor(self, key: ObjectKey) -> ChunkTransform:
        version, dek = await self.keyring.active_key(key.tenant_id)
        return aead.SegmentEncryptor(dek, version, object_binding(key))

    async def open_decryptor(self, key: ObjectKey) -> ChunkTransform:
        keys = await self.keyring.keys_of(key.tenant_id)
        return aead.SegmentDecryptor(
            dict(keys.keys), object_binding(key), allow_plaintext=self.read_plaintext
        )
