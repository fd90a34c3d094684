"""Audit retention: drop whole checkpointed segments older than the cutoff, keep verifiability.

A purge removes the events up to a signed checkpoint C whose events are all older than the
cutoff, keeps checkpoint C, and moves the chain's anchor to (C, hash of C). It first appends a
``retention.purge`` event carrying that anchor, so verification (which starts at the anchor)
accepts the move only with that event in the chain and the anchor matching a signed
checkpoint. It runs under its own database account: the application's may not DELETE.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Table, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from obsigen.audit.events import AuditEvent
from obsigen.audit.recorder import AuditRecorder
from obsigen.db.models import AuditChainHead, AuditCheckpoint, AuditEventRecord

_EVENTS = cast(Table, AuditEventRecord.__table__)
_HEADS = cast(Table, AuditChainHead.__table__)
_CHECKPOINTS = cast(Table, AuditCheckpoint.__table__)

RETENTION_ACTOR = {"kind": "system", "id": "retention"}


@dataclass(frozen=True, slots=True)
class PurgePlan:
    tenant_id: str
    cutoff: datetime
    anchor_seq: int
    anchor_hash: str
    events: int  # how many events the purge removes


async def plan_purge(
    sessions: async_sessionmaker[AsyncSession], tenant_id: str, cutoff: datetime
) -> PurgePlan | None:
    """The purge that removes the most whole segments older than ``cutoff``, or None."""
    async with sessions.begin() as session:
        head = await session.get(AuditChainHead, tenant_id)
        if head is None:
            return None
        first_recent = await session.scalar(
            select(func.min(AuditEventRecord.seq)).where(
                AuditEventRecord.tenant_id == tenant_id,
                AuditEventRecord.seq > head.anchor_seq,
                AuditEventRecord.time >= cutoff,
            )
        )
        # Times are not strictly monotonic across writers: nothing at or after the first
        # recent event goes, whatever its neighbours' times.
        limit = head.seq if first_recent is None else int(first_recent) - 1
        checkpoint = (
            await session.execute(
                select(AuditCheckpoint.seq, AuditCheckpoint.hash)
                .where(
                    AuditCheckpoint.tenant_id == tenant_id,
                    AuditCheckpoint.seq > head.anchor_seq,
                    AuditCheckpoint.seq <= limit,
                )
                .order_by(AuditCheckpoint.seq.desc())
                .limit(1)
            )
        ).first()
        if checkpoint is None:
            return None
        return PurgePlan(
            tenant_id=tenant_id,
            cutoff=cutoff,
            anchor_seq=checkpoint.seq,
            anchor_hash=checkpoint.hash,
            events=checkpoint.seq - head.anchor_seq,
        )


async def purge(engine: AsyncEngine, recorder: AuditRecorder, plan: PurgePlan) -> None:
    """Carry out a plan. ``engine`` uses the retention account, which may DELETE."""
    # The event first: should the delete then fail, the chain is merely unchanged; the other
    # way round, verification would (rightly) report deleted events.
    await recorder.record(
        AuditEvent(
            type="retention.purge",
            tenant_id=plan.tenant_id,
            actor=RETENTION_ACTOR,
            outcome="success",
            data={
                "scope": "audit",
                "cutoff": plan.cutoff.isoformat(),
                "removed": plan.events,
                "anchor_seq": plan.anchor_seq,
                "anchor_hash": plan.anchor_hash,
            },
        )
    )
    async with engine.begin() as conn:
        await conn.execute(
            select(_HEADS.c.seq).where(_HEADS.c.tenant_id == plan.tenant_id).with_for_update()
        )
        await conn.execute(
            delete(_EVENTS).where(
                _EVENTS.c.tenant_id == plan.tenant_id, _EVENTS.c.seq <= plan.anchor_seq
            )
        )
        # The anchor's own checkpoint stays: it proves the anchor hash.
        await conn.execute(
            delete(_CHECKPOINTS).where(
                _CHECKPOINTS.c.tenant_id == plan.tenant_id, _CHECKPOINTS.c.seq < plan.anchor_seq
            )
        )
        await conn.execute(
            update(_HEADS)
            .where(_HEADS.c.tenant_id == plan.tenant_id)
            .values(anchor_seq=plan.anchor_seq, anchor_hash=plan.anchor_hash)
        )
