"""Tenant- and owner-scoped access to artifacts: every read funnels through here.

Like uploads, artifacts are private to the principal they were made for: they are built
from that person's conversation and files. A row that is missing, in another tenant or owned
by someone else raises the same NotFound, so ids of other tenants and users never leak.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from obsigen.authz.principal import Principal
from obsigen.db.artifacts_models import StoredArtifact
from obsigen.errors import NotFound


def _owned(principal: Principal) -> Select[StoredArtifact]:
    return select(StoredArtifact).where(
        StoredArtifact.tenant_id == principal.tenant_id,
        StoredArtifact.owner_kind == principal.kind,
        StoredArtifact.owner_id == principal.id,
    )


async def access_artifact(
    session: AsyncSession, principal: Principal, artifact_id: str
) -> StoredArtifact:
    row = await session.scalar(_owned(principal).where(StoredArtifact.id == artifact_id))
    if row is None:
        raise NotFound("artifact not found")
    return row


async def list_artifacts(
    session: AsyncSession, principal: Principal, limit: int, before: str | None = None
) -> Sequence[StoredArtifact]:
    """Newest first; ``before`` (an artifact id) continues after that artifact."""
    query = _owned(principal)
    if before is not None:
        anchor = await access_artifact(session, principal, before)
        query = query.where(
            (StoredArtifact.created_at < anchor.created_at)
            | ((StoredArtifact.created_at == anchor.created_at) & (StoredArtifact.id < anchor.id))
        )
    query = query.order_by(StoredArtifact.created_at.desc(), StoredArtifact.id.desc())
    return (await session.scalars(query.limit(limit))).all()
