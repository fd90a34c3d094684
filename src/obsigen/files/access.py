"""Tenant- and owner-scoped access to uploaded files: every read funnels through here.

Files are private to their owner (the user or API key that uploaded them), whatever the
role: an admin's FILES_READ does not open a colleague's uploads, because uploads are what
people hand the assistant to work on and often hold personal data. Tenant-wide handling
(retention, erasure) runs as jobs, not through these functions.

A row that is missing, still pending, in another tenant or owned by someone else raises
the same NotFound, so ids of other tenants and users never leak.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from obsigen.authz.principal import Principal
from obsigen.db.files_models import StoredFile
from obsigen.errors import NotFound


def _owned_files(principal: Principal) -> Select[StoredFile]:
    return select(StoredFile).where(
        StoredFile.tenant_id == principal.tenant_id,
        StoredFile.owner_kind == principal.kind,
        StoredFile.owner_id == principal.id,
        StoredFile.status == "ready",
    )


def readable_file_ids(principal: Principal) -> Select[tuple[str]]:
    """The ids of the files ``principal`` may read, as a subquery (retrieval filters on it)."""
    return _owned_files(principal).with_only_columns(StoredFile.id)


async def access_file(session: AsyncSession, principal: Principal, file_id: str) -> StoredFile:
    row = await session.scalar(_owned_files(principal).where(StoredFile.id == file_id))
    if row is None:
        raise NotFound("file not found")
    return row


async def list_files(
    session: AsyncSession, principal: Principal, limit: int, before: str | None = None
) -> Sequence[StoredFile]:
    query = _owned_files(principal)
    if before is not None:
        anchor = await access_file(session, principal, before)
        query = query.where(
            (StoredFile.created_at < anchor.created_at)
            | ((StoredFile.created_at == anchor.created_at) & (StoredFile.id < anchor.id))
        )
    query = query.order_by(StoredFile.created_at.desc(), StoredFile.id.desc()).limit(limit)
    return (await session.scalars(query)).all()
