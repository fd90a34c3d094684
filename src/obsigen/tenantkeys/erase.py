"""Tenant erasure with crypto-shredding: destroy the data keys, delete the rows and objects.

Keys and rows go in one transaction, keys first: once it commits, nothing the tenant ever
sealed can be decrypted, even from a copy of the database or the bucket taken before, because
the only wrapped copies of its data keys were in the rows just overwritten. Objects are then
deleted one by one; one that cannot be deleted (a store outage) stays as ciphertext nobody can
open and is reported. The destroyed key rows stay, as the record of the shredding.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from obsigen.audit.events import AuditEvent
from obsigen.audit.recorder import AuditRecorder
from obsigen.db.artifacts_models import StoredArtifact
from obsigen.db.files_models import StoredFile
from obsigen.db.models import Tenant
from obsigen.errors import NotFound
from obsigen.files.stores import ObjectKey, ObjectStore
from obsigen.tenantkeys.keyring import TenantKeyring


@dataclass(slots=True)
class EraseReport:
    tenant_id: str
    tenant_name: str
    keys_destroyed: int = 0
    objects_deleted: int = 0
    objects_failed: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def find_tenant(session: AsyncSession, name_or_id: str) -> Tenant:
    found = await session.scalar(select(Tenant).where(Tenant.name == name_or_id))
    if found is None:
        found = await session.get(Tenant, name_or_id)
    if found is None:
        raise NotFound(f"no tenant named {name_or_id!r}")
    return found


async def _object_keys(session: AsyncSession, tenant_id: str) -> list[str]:
    keys: list[str] = []
    for column, owner in (
        (StoredFile.object_key, StoredFile.tenant_id),
        (StoredArtifact.object_key, StoredArtifact.tenant_id),
    ):
        keys += (await session.scalars(select(column).where(owner == tenant_id))).all()
    return keys


async def erase_tenant(
    *,
    sessions: async_sessionmaker[AsyncSession],
    keyring: TenantKeyring,
    store: ObjectStore,
    audit: AuditRecorder,
    tenant: str,
    actor: dict[str, str],
) -> EraseReport:
    async with sessions.begin() as session:
        row = await find_tenant(session, tenant)
        report = EraseReport(row.id, row.name)
        object_keys = await _object_keys(session, row.id)
        report.keys_destroyed = await keyring.destroy(session, row.id)
        # Every tenant table cascades from tenants (foreign keys, ON DELETE CASCADE).
        await session.execute(delete(Tenant).where(Tenant.id == row.id))
    for name in object_keys:
        try:
            await store.delete(ObjectKey.parse(name))
            report.objects_deleted += 1
        except Exception:  # noqa: BLE001 - listed, and unreadable anyway (its key is gone)
            report.objects_failed.append(name)
    keyring.forget(report.tenant_id)
    await audit.record(
        AuditEvent(
            type="tenant.erase",
            tenant_id=report.tenant_id,
            actor=actor,
            outcome="failure" if report.objects_failed else "success",
            data={
                "tenant_name": report.tenant_name,
                "keys_destroyed": report.keys_destroyed,
                "objects_deleted": report.objects_deleted,
                "objects_failed": len(report.objects_failed),
                "kek_provider": keyring.provider.name,
            },
            target={"kind": "tenant", "id": report.tenant_id},
        )
    )
    return report
