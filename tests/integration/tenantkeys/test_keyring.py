"""The keyring on both databases and every KEK backend: create, seal, rotate, re-wrap, destroy."""

from __future__ import annotations

import tempfile
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from obsigen.db.tenant_keys_models import TenantDataKey
from obsigen.identity.tenants import create_tenant
from obsigen.keys import KeyProvider, UnwrapFailed, make_key_provider
from obsigen.keys.rotation import rotate
from obsigen.tenantkeys.cipher import TenantCipher
from obsigen.tenantkeys.errors import CiphertextInvalid, TenantKeysDestroyed
from obsigen.tenantkeys.keyring import TenantKeyring


async def new_tenant(sessions: Any) -> str:
    async with sessions.begin() as session:
        return (await create_tenant(session, f"tk-{uuid.uuid4().hex[:10]}")).id


NAMES = {"table": "messages", "column": "content", "row_id": "row-1"}


async def key_rows(sessions: Any, tenant_id: str) -> list[TenantDataKey]:
    async with sessions() as session:
        query = select(TenantDataKey).where(TenantDataKey.tenant_id == tenant_id)
        return list((await session.scalars(query.order_by(TenantDataKey.version))).all())


async def test_seal_rotate_kek_rewrap_and_destroy(sessions: Any, kek_provider: KeyProvider) -> None:
    tenant = await new_tenant(sessions)
    keyring = TenantKeyring(kek_provider, sessions)
    cipher = TenantCipher(keyring)
    sealed = await cipher.encrypt_text(tenant, "the merger is on", **NAMES)
    assert "merger" not in sealed
    (before,) = await key_rows(sessions, tenant)
    assert before.state == "active"
    assert before.wrapped
    assert len(before.wrapped) < 1024

    # KEK rotation: a new KEK, the DEK re-wrapped under it; the data itself is untouched.
    await rotate(kek_provider, "kek", overlap=timedelta(0))
    report = await keyring.rewrap_all()
    (after,) = await key_rows(sessions, tenant)
    assert report.rewrapped >= 1
    assert after.kek_id == report.kek_id != before.kek_id
    assert after.wrapped != before.wrapped
    fresh = TenantCipher(TenantKeyring(kek_provider, sessions))  # nothing cached
    assert await fresh.decrypt_text(tenant, sealed, **NAMES) == "the merger is on"

    async with sessions.begin() as session:
        assert await keyring.destroy(session, tenant) == 1
    (gone,) = await key_rows(sessions, tenant)
    assert gone.wrapped is None
    assert gone.state == "destroyed"
    assert gone.destroyed_at is not None
    for reader in (cipher, TenantCipher(TenantKeyring(kek_provider, sessions))):
        with pytest.raises(TenantKeysDestroyed):
            await reader.decrypt_text(tenant, sealed, **NAMES)
        with pytest.raises(TenantKeysDestroyed):
            await reader.encrypt_text(tenant, "new data after erasure", **NAMES)


async def test_wrapped_key_copied_to_another_tenant_does_not_unwrap(
    sessions: Any, kek_provider: KeyProvider
) -> None:
    first, second = await new_tenant(sessions), await new_tenant(sessions)
    keyring = TenantKeyring(kek_provider, sessions, ttl_s=0)
    await keyring.active_key(first)
    await keyring.active_key(second)
    (stolen,) = await key_rows(sessions, first)
    async with sessions.begin() as session:
        row = await session.scalar(select(TenantDataKey).where(TenantDataKey.tenant_id == second))
        assert row is not None
        row.wrapped, row.kek_id = stolen.wrapped, stolen.kek_id
    with pytest.raises(UnwrapFailed):
        await keyring.keys_of(second)


async def test_dek_rotation_keeps_old_versions_readable(sessions: Any) -> None:
    with tempfile.TemporaryDirectory() as folder:
        provider = make_key_provider("software", Path(folder))
        tenant = await new_tenant(sessions)
        keyring = TenantKeyring(provider, sessions)
        cipher = TenantCipher(keyring)
        old = await cipher.encrypt_text(tenant, "v1 text", **NAMES)
        assert await keyring.rotate_dek(tenant) == 2
        new = await cipher.encrypt_text(tenant, "v2 text", **NAMES)
        assert old.startswith("obs1:1:")
        assert new.startswith("obs1:2:")
        assert await cipher.decrypt_text(tenant, old, **NAMES) == "v1 text"
        assert [r.state for r in await key_rows(sessions, tenant)] == ["retired", "active"]
        # A version that never existed is refused, not guessed.
        with pytest.raises(CiphertextInvalid):
            await cipher.decrypt_text(tenant, "obs1:9:" + old.split(":", 2)[2], **NAMES)
        await provider.aclose()


async def test_concurrent_first_writers_share_one_creation_on_a_tiny_pool(
    database_url: str, tmp_path: Path
) -> None:
    # The turn warms the tenant's key before its transaction begins (prepare_sealing). Many
    # first turns of one tenant at once must then queue on one creation, each holding no
    # connection while it waits: with a pool of one, a waiter holding a connection would
    # starve the creator until the pool timed out.
    from sqlalchemy.ext.asyncio import create_async_engine

    from obsigen.db.engine import make_engine, make_sessionmaker
    from obsigen.tenantkeys.bodies import attach_cipher, prepare_sealing

    if database_url.startswith("sqlite"):
        engine = make_engine(database_url)
    else:
        engine = create_async_engine(database_url, pool_size=1, max_overflow=0, pool_timeout=10)
    try:
        sessions = make_sessionmaker(engine)
        tenant = await new_tenant(sessions)
        provider = make_key_provider("software", tmp_path)
        keyring = TenantKeyring(provider, sessions)
        attach_cipher(sessions, TenantCipher(keyring))

        async def first_turn(i: int) -> str:
            await prepare_sealing(sessions, tenant)
            async with sessions.begin() as session:
                cipher = TenantCipher(keyring)
                return await cipher.encrypt_text(
                    tenant,
                    f"turn {i}",
                    table="messages",
                    column="content",
                    row_id=f"r{i}",
                    session=session,
                )

        import asyncio

        sealed = await asyncio.gather(*(first_turn(i) for i in range(12)))
        assert len(sealed) == 12
        (only,) = await key_rows(sessions, tenant)
        assert only.version == 1
        await provider.aclose()
    finally:
        await engine.dispose()
