"""Audit retention: whole signed segments go, the chain still verifies from its new anchor,
and an anchor moved without a recorded, signed purge is a finding."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from obsigen.audit.db_store import CheckpointPolicy, DatabaseAuditSink
from obsigen.audit.events import AuditEvent
from obsigen.audit.export import export_tenant, verify_export
from obsigen.audit.recorder import AuditRecorder
from obsigen.audit.retention import plan_purge, purge
from obsigen.audit.signing import Signer, software_signer, trusted_keys
from obsigen.audit.verify import verify_tenant
from obsigen.db.engine import make_engine

NOW = datetime.now(UTC)
OLD = NOW - timedelta(days=400)
CUTOFF = NOW - timedelta(days=200)


@pytest.fixture
def signer(tmp_path: Path) -> Signer:
    return software_signer(tmp_path)


@pytest.fixture
async def sink(database_url: str, signer: Signer) -> AsyncIterator[DatabaseAuditSink]:
    store = DatabaseAuditSink(
        make_engine(database_url), lambda: signer, CheckpointPolicy(every=5), owns_engine=True
    )
    yield store
    await store.aclose()


async def history(sink: DatabaseAuditSink, old: int, recent: int) -> str:
    tenant = uuid.uuid4().hex
    for n in range(old + recent):
        when = OLD + timedelta(minutes=n) if n < old else NOW - timedelta(minutes=old + recent - n)
        await sink.emit(
            AuditEvent(
                type="chat.prompt",
                tenant_id=tenant,
                actor={"kind": "user", "id": "u1"},
                outcome="success",
                data={"n": n},
                time=when,
            )
        )
    return tenant


async def first_seq(sink: DatabaseAuditSink, tenant: str) -> int:
    async with sink.sessions.begin() as session:
        value = await session.scalar(
            text("SELECT MIN(seq) FROM audit_events WHERE tenant_id = :t"), {"t": tenant}
        )
    return int(value)


async def test_purge_keeps_the_chain_verifiable(
    database_url: str, sink: DatabaseAuditSink, signer: Signer, tmp_path: Path
) -> None:
    tenant = await history(sink, old=23, recent=6)
    plan = await plan_purge(sink.sessions, tenant, CUTOFF)
    assert plan is not None
    # Segments end at checkpoints (every 5th event): 23 old events leave 20 purgeable.
    assert (plan.anchor_seq, plan.events) == (20, 20)

    retention = make_engine(database_url)
    try:
        await purge(retention, AuditRecorder([sink]), plan)
    finally:
        await retention.dispose()

    assert await first_seq(sink, tenant) == 21
    keys = await trusted_keys(tmp_path, signer)
    report = await verify_tenant(sink.sessions, tenant, keys)
    assert report.intact, report.summary()
    assert (report.first_seq, report.last_seq) == (21, 30)  # 30: the purge event itself
    assert await plan_purge(sink.sessions, tenant, CUTOFF) is None  # nothing whole is left
    export = tmp_path / "after-purge.jsonl"
    await export_tenant(
        sink.sessions,
        signer,
        tenant_id=tenant,
        tenant_name="acme",
        since=None,
        until=None,
        fmt="jsonl",
        path=export,
    )
    assert verify_export(export).report.intact


async def test_nothing_to_purge_when_no_whole_segment_is_old(sink: DatabaseAuditSink) -> None:
    tenant = await history(sink, old=0, recent=8)
    assert await plan_purge(sink.sessions, tenant, CUTOFF) is None
    # The first event is always signed, so it is a segment of its own; events 2-4 are not.
    tenant = await history(sink, old=4, recent=8)
    plan = await plan_purge(sink.sessions, tenant, CUTOFF)
    assert plan is not None
    assert (plan.anchor_seq, plan.events) == (1, 1)
    assert await plan_purge(sink.sessions, uuid.uuid4().hex, CUTOFF) is None


async def move_anchor(sink: DatabaseAuditSink, tenant: str, seq: int) -> None:
    async with sink.sessions.begin() as session:
        hash_ = await session.scalar(
            text("SELECT hash FROM audit_events WHERE tenant_id = :t AND seq = :s"),
            {"t": tenant, "s": seq},
        )
        await session.execute(
            text("DELETE FROM audit_events WHERE tenant_id = :t AND seq <= :s"),
            {"t": tenant, "s": seq},
        )
        await session.execute(
            text(
                "UPDATE audit_chain_heads SET anchor_seq = :s, anchor_hash = :h "
                "WHERE tenant_id = :t"
            ),
            {"t": tenant, "s": seq, "h": hash_},
        )


async def test_old_events_deleted_without_a_recorded_purge_are_found(
    sink: DatabaseAuditSink, signer: Signer, tmp_path: Path
) -> None:
    tenant = await history(sink, old=12, recent=3)
    await move_anchor(sink, tenant, 10)  # a signed checkpoint, but no purge event
    keys = await trusted_keys(tmp_path, signer)
    finding = (await verify_tenant(sink.sessions, tenant, keys)).finding
    assert finding is not None
    assert finding.seq == 11
    assert "no retention.purge event" in finding.problem


async def test_an_anchor_that_is_not_a_signed_checkpoint_is_found(
    sink: DatabaseAuditSink, signer: Signer, tmp_path: Path
) -> None:
    tenant = await history(sink, old=12, recent=3)
    await move_anchor(sink, tenant, 7)
    keys = await trusted_keys(tmp_path, signer)
    finding = (await verify_tenant(sink.sessions, tenant, keys)).finding
    assert finding is not None
    assert finding.seq == 8
    assert "not a signed checkpoint" in finding.problem
