"""Builds tenant encryption from ``[keys]``: the KEK provider, the keyring, and the two users
of it (message bodies through the session factory, objects through the store's hook)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from obsigen.config import Settings
from obsigen.keys.factory import make_key_provider
from obsigen.tenantkeys.bodies import attach_cipher
from obsigen.tenantkeys.cipher import TenantCipher
from obsigen.tenantkeys.keyring import TenantKeyring
from obsigen.tenantkeys.objects import TenantObjectEncryption


@dataclass(frozen=True, slots=True)
class TenantEncryption:
    keyring: TenantKeyring
    cipher: TenantCipher
    objects: TenantObjectEncryption

    async def aclose(self) -> None:
        self.keyring.forget()
        await self.keyring.provider.aclose()


def build_tenant_encryption(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> TenantEncryption | None:
    """None when ``keys.tenant_encryption`` is off. Sessions from ``sessions`` seal and open
    message bodies from now on."""
    keys = settings.keys
    if not keys.tenant_encryption:
        return None
    provider = make_key_provider(keys.kek, settings.paths.data_dir)
    keyring = TenantKeyring(provider, sessions, ttl_s=keys.dek_cache_ttl_s)
    built = TenantEncryption(
        keyring=keyring,
        cipher=TenantCipher(keyring, read_plaintext=keys.read_plaintext),
        objects=TenantObjectEncryption(keyring, read_plaintext=keys.read_plaintext),
    )
    attach_cipher(sessions, built.cipher)
    return built
