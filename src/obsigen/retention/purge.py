"""Find and delete a tenant's expired data in bounded batches, and audit what went.

Kinds and what "expired" means (cut-offs from :mod:`obsigen.retention.policy`):

- ``conversations``: ``updated_at`` before the cut-off, so a conversation still in use is
  kept however old it is; its ``messages`` and ``tool_calls`` go in the same transaction
  (deleted explicitly, not left to ON DELETE CASCADE, so the counts are exact and a
  connection without SQLite's foreign_keys pragma cannot leave orphans).
- ``files`` / ``artifacts``: finished ``files`` rows created before the cut-off; rows whose
  ``owner_kind`` is ``artifact`` follow ``artifacts_days``.
- ``pending_files``: rows still ``pending`` after ``pending_upload_hours``: uploads a crash
  cut short.
- ``artifacts`` also counts rows of the ``artifacts`` table (slides, charts, sandbox outputs)
  created before the ``artifacts_days`` cut-off, with their objects.

For a file the object goes first, then the row: a row without an object is a dangling
reference that the next run removes anyway, whereas an object without a row would be data
nobody can find or erase. When the store refuses, the row stays for the next run.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from obsigen.audit.events import AuditEvent
from obsigen.audit.recorder import AuditRecorder
from obsigen.config import RetentionSettings
from obsigen.db.artifacts_models import StoredArtifact
from obsigen.db.files_models import StoredFile
from obsigen.db.models import Conversation, Message, Tenant, ToolCall
from obsigen.files.stores import ObjectKey, ObjectStore
from obsigen.retention.policy import RetentionPolicy, TenantRetention

logger = logging.getLogger(__name__)

KINDS = ("conversations", "messages", "tool_calls", "files", "artifacts", "pending_files")
ARTIFACT_OWNER_KINDS = ("artifact",)
RETENTION_ACTOR = {"kind": "system", "id": "retention"}


class UnknownTenant(ValueError):
    pass


@dataclass(slots=True)
class TenantPurge:
    """What one tenant's purge removed (or, in a dry run, would remove)."""

    tenant_id: str
    tenant_name: str
    cutoffs: dict[str, datetime]
    dry_run: bool = False
    removed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    # Files whose object the store would not delete; their rows wait for the next run.
    failed: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.removed.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "tenant": self.tenant_name,
            "dry_run": self.dry_run,
            "cutoffs": {kind: when.isoformat() for kind, when in self.cutoffs.items()},
            "removed": dict(self.removed),
            "failed": dict(self.failed),
        }


@dataclass(slots=True)
class Purger:
    sessions: async_sessionmaker[AsyncSession]
    # None where no object store is configured: files are then left alone.
    store: ObjectStore | None
    recorder: AuditRecorder | None
    settings: RetentionSettings
    actor: dict[str, str] = field(default_factory=lambda: dict(RETENTION_ACTOR))
    # Set to end a run between batches (server shutdown); what went so far is still audited.
    stop: asyncio.Event | None = None

    @property
    def stopping(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    async def run(
        self, *, tenant: str | None = None, dry_run: bool = False, now: datetime | None = None
    ) -> list[TenantPurge]:
        """Purge every tenant (or one, by name or id); the results, one per tenant."""
        now = now or datetime.now(UTC)
        # The tenants' own stored choices count too (docs/retention.md, precedence).
        policy = await RetentionPolicy.load(self.settings, self.sessions)
        tenants = await self._tenants(tenant)
        if tenant is None:
            for key in policy.unknown_tenants(dict(tenants)):
                logger.warning("retention.tenant_overrides names no tenant: %r", key)
        results = []
        for tenant_id, name in tenants:
            if self.stopping:
                break
            rules = policy.for_tenant(tenant_id, name)
            results.append(await self.purge_tenant(tenant_id, name, rules, now, dry_run))
        return results

    async def _tenants(self, tenant: str | None) -> list[tuple[str, str]]:
        query = select(Tenant.id, Tenant.name).order_by(Tenant.id)
        if tenant is not None:
            query = query.where(or_(Tenant.id == tenant, Tenant.name == tenant))
        async with self.sessions.begin() as session:
            rows = [(row.id, row.name) for row in (await session.execute(query)).all()]
        if tenant is not None and not rows:
            raise UnknownTenant(f"unknown tenant {tenant!r}")
        return rows

    async def purge_tenant(
        self, tenant_id: str, name: str, rules: TenantRetention, now: datetime, dry_run: bool
    ) -> TenantPurge:
        cutoffs = rules.cutoffs(now, self.settings.pending_upload_hours)
        result = TenantPurge(tenant_id, name, cutoffs, dry_run=dry_run)
        if dry_run:
            await self._count(result)
            return result
        try:
            await self._conversations(result)
            if self.store is not None:
                for kind in ("files", "artifacts", "pending_files"):
                    await self._files(result, kind, self.store)
                await self._artifacts(result, self.store)
        except Exception as exc:
            # Whatever went before the error is gone for good: it is audited all the same.
            await self._audit(result, error=type(exc).__name__)
            raise
        await self._audit(result)
        return result

    # --- conversations ------------------------------------------------------------------------

    def _expired_conversations(self, result: TenantPurge) -> ColumnElement[bool]:
        return (Conversation.tenant_id == result.tenant_id) & (
            Conversation.updated_at < result.cutoffs["conversations"]
        )

    async def _conversations(self, result: TenantPurge) -> None:
        batch = self.settings.batch_size
        while not self.stopping:
            async with self.sessions.begin() as session:
                candidates = list(
                    (
                        await session.scalars(
                            select(Conversation.id)
                            .where(self._expired_conversations(result))
                            .order_by(Conversation.updated_at, Conversation.id)
                            .limit(batch)
                        )
                    ).all()
                )
                if not candidates:
                    return
                # Locked by primary key (only these rows), with the cut-off checked again: a
                # turn that touched one meanwhile keeps it; one that comes later waits, then
                # finds it gone.
                ids = list(
                    (
                        await session.scalars(
                            select(Conversation.id)
                            .where(
                                Conversation.id.in_(candidates),
                                self._expired_conversations(result),
                            )
                            .with_for_update()
                        )
                    ).all()
                )
                if ids:
                    messages = await _delete(session, Message, Message.conversation_id.in_(ids))
                    calls = await _delete(session, ToolCall, ToolCall.conversation_id.in_(ids))
                    conversations = await _delete(session, Conversation, Conversation.id.in_(ids))
                    result.removed["messages"] += messages
                    result.removed["tool_calls"] += calls
                    result.removed["conversations"] += conversations
            if len(candidates) < batch:
                return

    # --- files --------------------------------------------------------------------------------

    def _expired_files(self, result: TenantPurge, kind: str) -> ColumnElement[bool]:
        tenant = StoredFile.tenant_id == result.tenant_id
        if kind == "pending_files":
            return (
                tenant
                & (StoredFile.status == "pending")
                & (StoredFile.created_at < result.cutoffs[kind])
            )
        artifact = StoredFile.owner_kind.in_(ARTIFACT_OWNER_KINDS)
        return (
            tenant
            & (StoredFile.status != "pending")
            & (artifact if kind == "artifacts" else ~artifact)
            & (StoredFile.created_at < result.cutoffs[kind])
        )

    async def _files(self, result: TenantPurge, kind: str, store: ObjectStore) -> None:
        await self._objects_and_rows(
            result, kind, StoredFile, self._expired_files(result, kind), store
        )

    # --- artifacts ----------------------------------------------------------------------------

    def _expired_artifacts(self, result: TenantPurge) -> ColumnElement[bool]:
        return (StoredArtifact.tenant_id == result.tenant_id) & (
            StoredArtifact.created_at < result.cutoffs["artifacts"]
        )

    async def _artifacts(self, result: TenantPurge, store: ObjectStore) -> None:
        await self._objects_and_rows(
            result, "artifacts", StoredArtifact, self._expired_artifacts(result), store
        )

    # --- objects with a row each ----------------------------------------------------------------

    async def _objects_and_rows(
        self,
        result: TenantPurge,
        kind: str,
        model: type[StoredFile] | type[StoredArtifact],
        expired: ColumnElement[bool],
        store: ObjectStore,
    ) -> None:
        batch = self.settings.batch_size
        # Keyset paging by id: rows whose object could not be deleted stay behind and must
        # not be fetched again in this run.
        after = ""
        while not self.stopping:
            async with self.sessions.begin() as session:
                rows = (
                    await session.execute(
                        select(model.id, model.object_key)
                        .where(expired, model.id > after)
                        .order_by(model.id)
                        .limit(batch)
                    )
                ).all()
            if not rows:
                return
            after = rows[-1].id
            gone = []
            for row in rows:
                try:
                    await store.delete(ObjectKey.parse(row.object_key))
                except Exception as exc:  # noqa: BLE001 - any store error: keep the row, go on
                    # Logged without the name: file names can be personal data.
                    logger.warning(
                        "retention: object of %s %s (tenant %s) not deleted, kept for the "
                        "next run: %s",
                        model.__tablename__,
                        row.id,
                        result.tenant_id,
                        type(exc).__name__,
                    )
                    result.failed[kind] = result.failed.get(kind, 0) + 1
                    continue
                gone.append(row.id)
            if gone:
                async with self.sessions.begin() as session:
                    removed = await _delete(session, model, model.id.in_(gone) & expired)
                result.removed[kind] += removed
            if len(rows) < batch:
                return

    # --- dry run and audit --------------------------------------------------------------------

    async def _count(self, result: TenantPurge) -> None:
        expired = self._expired_conversations(result)
        async with self.sessions.begin() as session:
            result.removed["conversations"] = await _scalar_count(
                session, select(func.count()).select_from(Conversation).where(expired)
            )
            for kind, model in (("messages", Message), ("tool_calls", ToolCall)):
                query = (
                    select(func.count())
                    .select_from(model)
                    .join(Conversation, Conversation.id == model.conversation_id)
                    .where(expired)
                )
                result.removed[kind] = await _scalar_count(session, query)
            if self.store is not None:
                for kind in ("files", "artifacts", "pending_files"):
                    query = (
                        select(func.count())
                        .select_from(StoredFile)
                        .where(self._expired_files(result, kind))
                    )
                    result.removed[kind] = await _scalar_count(session, query)
                result.removed["artifacts"] += await _scalar_count(
                    session,
                    select(func.count())
                    .select_from(StoredArtifact)
                    .where(self._expired_artifacts(result)),
                )

    async def _audit(self, result: TenantPurge, error: str | None = None) -> None:
        if self.recorder is None or (result.total == 0 and not result.failed and error is None):
            return
        # Counts and cut-offs only: never ids, names or content of what went.
        data: dict[str, Any] = {
            "scope": "data",
            "cutoffs": {kind: when.isoformat() for kind, when in result.cutoffs.items()},
            "removed": dict(result.removed),
            "failed": dict(result.failed),
        }
        if error is not None:
            data["error"] = error
        await self.recorder.record(
            AuditEvent(
                type="retention.purge",
                tenant_id=result.tenant_id,
                actor=self.actor,
                outcome="failure" if result.failed or error else "success",
                data=data,
            )
        )


async def _delete(session: AsyncSession, model: Any, condition: ColumnElement[bool]) -> int:
    done = await session.execute(
        delete(model).where(condition).execution_options(synchronize_session=False)
    )
    return int(cast(CursorResult[Any], done).rowcount or 0)


async def _scalar_count(session: AsyncSession, query: Any) -> int:
    return int(await session.scalar(query) or 0)
