"""``TenantCipher``: text columns sealed under the tenant's DEK, bound to their row.

``encrypt_text(tenant_id, text, table=, column=, row_id=)`` returns an envelope string to store
in place of the text; ``decrypt_text`` with the same names gives the text back, and refuses an
envelope moved to any other tenant, table, column or row. Values without the envelope prefix
are returned as they are when ``read_plaintext`` is on (rows written before encryption).
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from obsigen.tenantkeys import aead
from obsigen.tenantkeys.errors import CiphertextInvalid
from obsigen.tenantkeys.keyring import TenantKeyring


class TenantCipher:
    def __init__(self, keyring: TenantKeyring, *, read_plaintext: bool = True) -> None:
        self.keyring = keyring
        self.read_plaintext = read_plaintext

    async def encrypt_text(
        self,
        tenant_id: str,
        text: str,
        *,
        table: str,
        column: str,
        row_id: str,
        session: AsyncSession | None = None,
    ) -> str:
        version, dek = await self.keyring.active_key(tenant_id, session)
        aad = aead.text_aad(tenant_id, table, column, row_id, version)
        return aead.seal_text(dek, version, text, aad)

    async def decrypt_text(
        self,
        tenant_id: str,
        stored: str,
        *,
        table: str,
        column: str,
        row_id: str,
        session: AsyncSession | None = None,
    ) -> str:
        if not aead.is_envelope(stored):
            if self.read_plaintext:
                return stored
            raise CiphertextInvalid(f"{table}.{column} holds plaintext where ciphertext belongs")
        version = aead.envelope_version(stored)
        keys = await self.keyring.keys_of(tenant_id, session)
        dek = keys.keys.get(version)
        if dek is None:
            raise CiphertextInvalid(f"{table}.{column} sealed with unknown key v{version}")
        return aead.open_text(dek, stored, aead.text_aad(tenant_id, table, column, row_id, version))
