"""The database audit store on SQLite and MariaDB: one gap-free chain whatever the concurrency,
signed checkpoints, exports an auditor can check offline, and the append-only grants."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from obsigen.audit import db_store
from obsigen.audit.canonical import NotCanonicalisable
from obsigen.audit.chain import VerifyReport
from obsigen.audit.db_store import CheckpointPolicy, DatabaseAuditSink
from obsigen.audit.events import AuditEvent
from obsigen.audit.export import export_tenant, manifest_path, verify_export
from obsigen.audit.interfaces import AuditSink
from obsigen.audit.signing import Signer, SoftwareEd25519Signer, software_signer, trusted_keys
from obsigen.audit.verify import verify_tenant
from obsigen.db.engine import make_engine
from obsigen.db.migrate import upgrade_to_head
from obsigen.db.models import AuditCheckpoint, AuditEventRecord

ROOT = Path(__file__).resolve().parents[3]


def new_tenant() -> str:
    return uuid.uuid4().hex


def event(tenant_id: str, n: int = 0, **data: Any) -> AuditEvent:
    return AuditEvent(
        type="chat.prompt",
        tenant_id=tenant_id,
        actor={"kind": "user", "id": "u1"},
        outcome="success",
        interaction_id=uuid.uuid4().hex,
        data={"n": n, **data},
    )


@pytest.fixture
def signer(tmp_path: Path) -> Signer:
    return software_signer(tmp_path)


@pytest.fixture
async def sink(database_url: str, signer: Signer) -> AsyncIterator[DatabaseAuditSink]:
    store = DatabaseAuditSink(
        make_engine(database_url), lambda: signer, CheckpointPolicy(every=10), owns_engine=True
    )
    yield store
    await store.aclose()


async def verify(
    sink: DatabaseAuditSink, tenant_id: str, signer: Signer, tmp_path: Path
) -> VerifyReport:
    return await verify_tenant(sink.sessions, tenant_id, await trusted_keys(tmp_path, signer))


async def seqs(sessions: async_sessionmaker[AsyncSession], tenant_id: str) -> list[int]:
    async with sessions.begin() as session:
        rows = await session.execute(
            select(AuditEventRecord.seq)
            .where(AuditEventRecord.tenant_id == tenant_id)
            .order_by(AuditEventRecord.seq)
        )
        return list(rows.scalars())


def test_is_an_audit_sink(database_url: str, signer: Signer) -> None:
    store = DatabaseAuditSink(make_engine(database_url), lambda: signer)
    assert isinstance(store, AuditSink)
    assert store.name == "database"


async def test_concurrent_appends_make_one_gap_free_chain(
    sink: DatabaseAuditSink, signer: Signer, tmp_path: Path
) -> None:
    tenant = new_tenant()
    events = [event(tenant, n) for n in range(100)]
    await asyncio.gather(*(sink.emit(e) for e in events))
    assert await seqs(sink.sessions, tenant) == list(range(1, 101))
    report = await verify(sink, tenant, signer, tmp_path)
    assert report.intact, report.summary()
    assert report.events == 100
    # Every 10th event is signed (the first one is too: no checkpoint existed yet).
    assert report.checkpoints >= 10
    async with sink.sessions.begin() as session:
        stored = set(
            (
                await session.execute(
                    select(AuditEventRecord.event_id).where(AuditEventRecord.tenant_id == tenant)
                )
            ).scalars()
        )
    assert stored == {e.event_id for e in events}


async def test_two_engines_share_one_chain(
    database_url: str, sink: DatabaseAuditSink, signer: Signer, tmp_path: Path
) -> None:
    tenant = new_tenant()
    other = DatabaseAuditSink(make_engine(database_url), lambda: signer, owns_engine=True)
    try:
        await asyncio.gather(
            *(sink.emit(event(tenant, n)) for n in range(50)),
            *(other.emit(event(tenant, n)) for n in range(50, 100)),
        )
    finally:
        await other.aclose()
    assert await seqs(sink.sessions, tenant) == list(range(1, 101))
    report = await verify(sink, tenant, signer, tmp_path)
    assert report.intact, report.summary()


async def test_two_processes_share_one_chain(
    database_url: str, sink: DatabaseAuditSink, signer: Signer, tmp_path: Path
) -> None:
    tenant = new_tenant()
    script = textwrap.dedent(
        f"""
        import asyncio
        from pathlib import Path
        from obsigen.audit.db_store import DatabaseAuditSink, CheckpointPolicy
        from obsigen.audit.events import AuditEvent
        from obsigen.audit.signing import software_signer
        from obsigen.db.engine import make_engine

        async def main():
            signer = software_signer(Path({str(tmp_path)!r}))
            sink = DatabaseAuditSink(make_engine({database_url!r}), lambda: signer,
                                     CheckpointPolicy(every=7), owns_engine=True)
            for n in range(60):
                await sink.emit(AuditEvent(type="tool.call", tenant_id={tenant!r},
                                           actor={{"kind": "user", "id": "p2"}},
                                           outcome="success", data={{"n": n}}))
            await sink.aclose()

        asyncio.run(main())
        """
    )
    child = await asyncio.create_subprocess_exec(sys.executable, "-c", script, cwd=ROOT)
    for n in range(60):
        await sink.emit(event(tenant, n))
    assert await asyncio.wait_for(child.wait(), 120) == 0
    assert await seqs(sink.sessions, tenant) == list(range(1, 121))
    report = await verify(sink, tenant, signer, tmp_path)
    assert report.intact, report.summary()


async def test_tenants_have_separate_chains(
    sink: DatabaseAuditSink, signer: Signer, tmp_path: Path
) -> None:
    first, second = new_tenant(), new_tenant()
    await asyncio.gather(*(sink.emit(event(first if n % 2 else second, n)) for n in range(20)))
    assert await seqs(sink.sessions, first) == list(range(1, 11))
    assert await seqs(sink.sessions, second) == list(range(1, 11))
    for tenant in (first, second):
        assert (await verify(sink, tenant, signer, tmp_path)).intact


async def test_checkpoints_every_n_events_and_after_t_seconds(
    database_url: str, signer: Signer
) -> None:
    now = [datetime(2026, 11, 26, tzinfo=UTC)]
    store = DatabaseAuditSink(
        make_engine(database_url),
        lambda: signer,
        CheckpointPolicy(every=5, seconds=60),
        owns_engine=True,
        clock=lambda: now[0],
    )
    tenant = new_tenant()
    try:
        for n in range(12):
            await store.emit(event(tenant, n))
        now[0] += timedelta(seconds=61)
        await store.emit(event(tenant, 12))
        async with store.sessions.begin() as session:
            signed = list(
                (
                    await session.execute(
                        select(AuditCheckpoint.seq)
                        .where(AuditCheckpoint.tenant_id == tenant)
                        .order_by(AuditCheckpoint.seq)
                    )
                ).scalars()
            )
        # The first event (no checkpoint yet), every 5th, and the first after 61 seconds.
        assert signed == [1, 5, 10, 13]
        assert await store.checkpoint_now(tenant) is None  # the head is signed already
        await store.emit(event(tenant, 13))
        checkpoint = await store.checkpoint_now(tenant)
        assert checkpoint is not None
        assert checkpoint.seq == 14
    finally:
        await store.aclose()


async def test_a_cancelled_writer_loses_nothing(
    sink: DatabaseAuditSink, signer: Signer, tmp_path: Path
) -> None:
    tenant = new_tenant()
    tasks = [asyncio.create_task(sink.emit(event(tenant, n))) for n in range(30)]
    await asyncio.sleep(0)
    tasks[0].cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await sink.aclose()  # writes whatever a cancelled writer left queued
    stored = await seqs(sink.sessions, tenant)
    assert stored == list(range(1, len(stored) + 1))
    assert len(stored) >= 29
    assert (await verify(sink, tenant, signer, tmp_path)).intact


@pytest.fixture
def twin_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """The synchronous twin is tested whether or not sinks use it by default."""
    monkeypatch.setattr(db_store, "TWIN_ENABLED", True)


def quiet_policy() -> CheckpointPolicy:
    # After the first event's checkpoint, none for a while: batches can take the twin.
    return CheckpointPolicy(every=1000, seconds=3600)


@pytest.mark.usefixtures("twin_on")
async def test_batches_without_a_checkpoint_take_the_sync_twin_on_a_sqlite_file(
    database_url: str, signer: Signer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = DatabaseAuditSink(
        make_engine(database_url), lambda: signer, quiet_policy(), owns_engine=True
    )
    threaded: list[bool] = []
    append_sync = store._append_sync

    def spied(*args: Any) -> bool:
        done = append_sync(*args)
        threaded.append(done)
        return done

    monkeypatch.setattr(store, "_append_sync", spied)
    tenant = new_tenant()
    try:
        await store.emit(event(tenant, 0))  # signs the first checkpoint: the async path
        await store.emit_many([event(tenant, n) for n in range(1, 4)])
        await store.emit(event(tenant, 4))
        assert await seqs(store.sessions, tenant) == [1, 2, 3, 4, 5]
        assert (await verify(store, tenant, signer, tmp_path)).intact
    finally:
        await store.aclose()
    on_sqlite = database_url.startswith("sqlite")
    assert threaded == ([False, True, True] if on_sqlite else [])


@pytest.mark.usefixtures("twin_on")
async def test_a_writer_cancelled_while_its_thread_commits_writes_once(
    signer: Signer, tmp_path: Path
) -> None:
    # The synchronous twin exists for SQLite files only: a database of its own.
    path = tmp_path / "cancel.db"
    engine = make_engine(f"sqlite+aiosqlite:///{path}")
    await upgrade_to_head(engine)
    store = DatabaseAuditSink(engine, lambda: signer, quiet_policy(), owns_engine=True)
    tenant = new_tenant()
    try:
        await store.emit(event(tenant, 0))
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # the twin's transaction waits on this lock
        writer = asyncio.create_task(store.emit_many([event(tenant, 1), event(tenant, 2)]))
        await asyncio.sleep(0.3)
        writer.cancel()
        await asyncio.sleep(0.2)
        writer.cancel()  # a second cancel does not cut the wait short either
        await asyncio.sleep(0.2)
        assert not writer.done()  # its thread's transaction has not ended yet
        holder.execute("ROLLBACK")
        holder.close()
        with pytest.raises(asyncio.CancelledError):
            await writer
        await store.emit(event(tenant, 3))
        assert await seqs(store.sessions, tenant) == [1, 2, 3, 4]
        assert (await verify(store, tenant, signer, tmp_path)).intact
    finally:
        await store.aclose()


async def test_an_event_without_a_json_form_fails_alone(
    sink: DatabaseAuditSink, signer: Signer, tmp_path: Path
) -> None:
    tenant = new_tenant()
    results = await asyncio.gather(
        *(sink.emit(event(tenant, n)) for n in range(5)),
        sink.emit(event(tenant, 5, score=float("nan"))),
        *(sink.emit(event(tenant, n)) for n in range(6, 10)),
        return_exceptions=True,
    )
    failed = [n for n, result in enumerate(results) if isinstance(result, NotCanonicalisable)]
    assert failed == [5]
    assert all(result is None for n, result in enumerate(results) if n != 5)
    assert await seqs(sink.sessions, tenant) == list(range(1, 10))
    assert (await verify(sink, tenant, signer, tmp_path)).intact


async def test_masked_before_storing(sink: DatabaseAuditSink) -> None:
    tenant = new_tenant()
    key = "obs_0123456789abcdef_" + "s" * 43
    await sink.emit(event(tenant, content=f"my key {key} and Bearer abc.def.ghi123"))
    async with sink.sessions.begin() as session:
        record = await session.scalar(
            select(AuditEventRecord.record).where(AuditEventRecord.tenant_id == tenant)
        )
    assert record is not None
    assert key not in record
    assert "abc.def.ghi123" not in record
    assert "obs_0123456789abcdef_[MASKED]" in record


# --- export and offline verification ------------------------------------------------------------


async def exported(
    sink: DatabaseAuditSink, signer: Signer, tmp_path: Path, count: int = 25, fmt: Any = "jsonl"
) -> Path:
    tenant = new_tenant()
    for n in range(count):
        await sink.emit(event(tenant, n, text="Grüße \u2028 数据"))
    path = tmp_path / f"export.{fmt}.jsonl"
    await export_tenant(
        sink.sessions,
        signer,
        tenant_id=tenant,
        tenant_name="acme",
        since=None,
        until=None,
        fmt=fmt,
        path=path,
    )
    return path


def lines_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def write_lines(path: Path, lines: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")


@pytest.mark.parametrize("fmt", ["jsonl", "ocsf"])
async def test_export_verifies_offline(
    sink: DatabaseAuditSink, signer: Signer, tmp_path: Path, fmt: str
) -> None:
    path = await exported(sink, signer, tmp_path, fmt=fmt)
    check = verify_export(path)
    assert check.report.intact, check.report.summary()
    assert check.report.events == 25
    assert check.report.checkpoints >= 2
    assert check.manifest_key_id == signer.key_id
    assert verify_export(path, trusted={signer.key_id}).report.intact
    if fmt == "ocsf":
        first = lines_of(path)[0]
        assert first["class_uid"] == 6003
        assert first["metadata"]["sequence"] == 1
        assert first["type_uid"] == 600399


async def test_export_of_a_period(sink: DatabaseAuditSink, signer: Signer, tmp_path: Path) -> None:
    tenant = new_tenant()
    start = datetime.now(UTC)
    for n in range(10):
        await sink.emit(
            AuditEvent(
                type="chat.prompt",
                tenant_id=tenant,
                actor={"kind": "user", "id": "u"},
                outcome="success",
                data={"n": n},
                time=start + timedelta(minutes=n),
            )
        )
    path = tmp_path / "period.jsonl"
    result = await export_tenant(
        sink.sessions,
        signer,
        tenant_id=tenant,
        tenant_name="acme",
        since=start + timedelta(minutes=3),
        until=start + timedelta(minutes=7),
        fmt="jsonl",
        path=path,
    )
    assert (result.count, result.first_seq, result.last_seq) == (4, 4, 7)
    check = verify_export(path)
    assert check.report.intact, check.report.summary()
    assert (check.report.first_seq, check.report.last_seq) == (4, 7)


async def test_edited_export_fails(sink: DatabaseAuditSink, signer: Signer, tmp_path: Path) -> None:
    path = await exported(sink, signer, tmp_path)
    lines = lines_of(path)
    lines[6]["record"]["data"]["n"] = 1000
    write_lines(path, lines)
    finding = verify_export(path).report.finding
    assert finding is not None
    assert (finding.seq, finding.event_id) == (7, lines[6]["event_id"])


async def test_export_with_a_line_removed_fails(
    sink: DatabaseAuditSink, signer: Signer, tmp_path: Path
) -> None:
    path = await exported(sink, signer, tmp_path)
    lines = lines_of(path)
    write_lines(path, lines[:3] + lines[4:])
    finding = verify_export(path).report.finding
    assert finding is not None
    assert finding.seq == 4
    assert "missing" in finding.problem


async def test_truncated_export_fails_even_with_the_manifest_edited(
    sink: DatabaseAuditSink, signer: Signer, tmp_path: Path
) -> None:
    path = await exported(sink, signer, tmp_path)
    lines = lines_of(path)
    write_lines(path, lines[:-2])
    finding = verify_export(path).report.finding
    assert finding is not None
    assert finding.seq == 24
    assert "truncated" in finding.problem
    # Lowering the manifest's last seq to match breaks its signature instead.
    manifest = json.loads(manifest_path(path).read_text())
    manifest["events"].update(last_seq=23, last_hash=lines[-3]["hash"], count=23)
    manifest["checkpoints"] = [c for c in manifest["checkpoints"] if c["seq"] <= 23]
    manifest_path(path).write_text(json.dumps(manifest))
    finding = verify_export(path).report.finding
    assert finding is not None
    assert "manifest signature is invalid" in finding.problem


async def test_export_resigned_by_another_key_fails_when_keys_are_pinned(
    sink: DatabaseAuditSink, signer: Signer, tmp_path: Path
) -> None:
    path = await exported(sink, signer, tmp_path, count=3)
    stranger = SoftwareEd25519Signer(bytes(32))
    tenant = lines_of(path)[0]["record"]["tenant_id"]
    forged = tmp_path / "forged.jsonl"
    await export_tenant(
        sink.sessions,
        stranger,
        tenant_id=tenant,
        tenant_name="acme",
        since=None,
        until=None,
        fmt="jsonl",
        path=forged,
    )
    check = verify_export(forged, trusted={signer.key_id})
    assert not check.report.intact
    assert check.manifest_key_id == stranger.key_id


async def test_a_garbled_export_line_is_named(
    sink: DatabaseAuditSink, signer: Signer, tmp_path: Path
) -> None:
    path = await exported(sink, signer, tmp_path, count=5)
    raw = path.read_text(encoding="utf-8").splitlines()
    raw[2] = raw[2][:40]
    path.write_text("\n".join(raw) + "\n", encoding="utf-8")
    finding = verify_export(path).report.finding
    assert finding is not None
    assert finding.seq == 3
    assert "line 3" in finding.problem


# --- MariaDB: the application's account may only SELECT and INSERT audit events ------------------


@pytest.fixture
async def restricted_url(database_url: str) -> AsyncIterator[str]:
    assert database_url.startswith("mysql"), "grants are a MariaDB/MySQL feature"
    database = database_url.rsplit("/", 1)[1].split("?")[0]
    user, password = f"audit_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    admin = make_engine(database_url)
    grants = [
        f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'",
        f"GRANT SELECT, INSERT ON {database}.audit_events TO '{user}'@'%'",
        f"GRANT SELECT, INSERT ON {database}.audit_checkpoints TO '{user}'@'%'",
        f"GRANT SELECT, INSERT, UPDATE ON {database}.audit_chain_heads TO '{user}'@'%'",
    ]
    try:
        async with admin.begin() as conn:
            for grant in grants:
                await conn.execute(text(grant))
        host = database_url.split("@", 1)[1]
        yield f"mysql+asyncmy://{user}:{password}@{host}"
    finally:
        async with admin.begin() as conn:
            await conn.execute(text(f"DROP USER IF EXISTS '{user}'@'%'"))
        await admin.dispose()


@pytest.mark.mariadb_only
async def test_the_documented_grants_suffice_and_forbid_changes(
    restricted_url: str, signer: Signer, tmp_path: Path
) -> None:
    docs = (ROOT / "docs" / "audit.md").read_text(encoding="utf-8")
    assert "GRANT SELECT, INSERT ON obsigen.audit_events TO 'obsigen'@'%'" in docs
    store = DatabaseAuditSink(make_engine(restricted_url), lambda: signer, owns_engine=True)
    tenant = new_tenant()
    try:
        await asyncio.gather(*(store.emit(event(tenant, n)) for n in range(20)))
        assert (await verify(store, tenant, signer, tmp_path)).intact
        for statement in (
            "UPDATE audit_events SET outcome = 'failure' WHERE tenant_id = :t",
            "DELETE FROM audit_events WHERE tenant_id = :t",
            "DELETE FROM audit_checkpoints WHERE tenant_id = :t",
        ):
            with pytest.raises(DBAPIError, match="denied"):
                async with store.sessions.begin() as session:
                    await session.execute(text(statement), {"t": tenant})
        async with store.sessions.begin() as session:
            count = await session.scalar(
                select(func.count()).where(AuditEventRecord.tenant_id == tenant)
            )
        assert count == 20
    finally:
        await store.aclose()
