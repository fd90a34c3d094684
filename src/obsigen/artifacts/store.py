"""Saving an artifact: bytes into the object store, then its row, then the audit event.

An artifact is something the platform made for a user (slides, a chart, a file a sandbox run
left in ``/output``). It lands in the same object store as uploads, under the tenant's area
(``<tenant_id>/artifact-<id>``), so it gets the same encryption at rest and the same
residency. The object is written first and the row only once the object is complete: every
row is downloadable, and a failed save leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import delete as sql_delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from obsigen.audit.events import AuditEvent
from obsigen.audit.recorder import AuditRecorder
from obsigen.authz.principal import Principal
from obsigen.db.artifacts_models import StoredArtifact
from obsigen.db.base import new_id
from obsigen.files.names import sanitise_filename
from obsigen.files.stores import CHUNK_SIZE, ObjectKey, ObjectStore

ArtifactKind = Literal["slides", "chart", "sandbox"]
OBJECT_PREFIX = "artifact-"


def object_key_for(tenant_id: str, artifact_id: str) -> ObjectKey:
    return ObjectKey(tenant_id, OBJECT_PREFIX + artifact_id)


@dataclass(frozen=True, slots=True)
class ArtifactOrigin:
    """Where an artifact came from, for correlation in the row and the audit trail."""

    conversation_id: str | None = None
    interaction_id: str | None = None
    # "tool:make_chart", "api:code.run": what made it.
    source: str = ""
    source_address: str | None = None


async def _chunks_of(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), CHUNK_SIZE):
        yield data[start : start + CHUNK_SIZE]


@dataclass(frozen=True, slots=True)
class ArtifactStore:
    sessions: async_sessionmaker[AsyncSession]
    objects: ObjectStore
    # None only in tests that do not look at the audit trail.
    audit: AuditRecorder | None

    async def save(
        self,
        principal: Principal,
        *,
        kind: ArtifactKind,
        name: str,
        content_type: str,
        data: bytes | AsyncIterable[bytes],
        origin: ArtifactOrigin | None = None,
    ) -> StoredArtifact:
        """Store ``data`` as an artifact owned by ``principal``; the new row."""
        origin = origin or ArtifactOrigin()
        artifact_id = new_id()
        key = object_key_for(principal.tenant_id, artifact_id)
        chunks = _chunks_of(data) if isinstance(data, bytes) else data
        result = await self.objects.put_stream(key, chunks)
        row = StoredArtifact(
            id=artifact_id,
            tenant_id=principal.tenant_id,
            owner_kind=principal.kind,
            owner_id=principal.id,
            conversation_id=origin.conversation_id,
            interaction_id=origin.interaction_id,
            kind=kind,
            name=sanitise_filename(name),
            content_type=content_type,
            size=result.size,
            sha256=result.sha256,
            object_key=str(key),
        )
        try:
            async with self.sessions.begin() as session:
                session.add(row)
        except BaseException:
            # Shielded: a cancelled caller must not leave an object nobody can find or erase.
            with contextlib.suppress(Exception):
                await asyncio.shield(self.objects.delete(key))
            raise
        await self._audit(principal, row, origin)
        return row

    async def delete(self, row: StoredArtifact) -> None:
        """Remove the artifact for good. The object goes first: should the store refuse, the
        row stays and the deletion can be retried, rather than leave an unfindable object."""
        await self.objects.delete(ObjectKey.parse(row.object_key))
        async with self.sessions.begin() as session:
            await session.execute(
                sql_delete(StoredArtifact).where(
                    StoredArtifact.tenant_id == row.tenant_id, StoredArtifact.id == row.id
                )
            )

    async def _audit(
        self, principal: Principal, row: StoredArtifact, origin: ArtifactOrigin
    ) -> None:
        if self.audit is None:
            return
        await self.audit.record(
            AuditEvent(
                type="artifact.create",
                tenant_id=principal.tenant_id,
                actor={"kind": principal.kind, "id": principal.id},
                outcome="success",
                interaction_id=origin.interaction_id,
                source_address=origin.source_address,
                target={"kind": "artifact", "id": row.id},
                data={
                    "kind": row.kind,
                    "name": row.name,
                    "type": row.content_type,
                    "size": row.size,
                    "sha256": row.sha256,
                    "source": origin.source,
                    "conversation_id": origin.conversation_id,
                },
            )
        )
