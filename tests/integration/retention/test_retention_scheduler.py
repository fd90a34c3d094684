"""The server's scheduled purge on real databases: it runs on its interval, stops cleanly on
shutdown, and never runs while another process holds the retention lock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from tests.integration.retention.retention_data import (
    ListSink,
    add_conversation,
    days_ago,
    new_tenant,
    row_exists,
)

from obsigen.audit.recorder import AuditRecorder
from obsigen.config import RetentionSettings
from obsigen.db.engine import make_engine, make_sessionmaker
from obsigen.db.models import Conversation
from obsigen.files.local_store import LocalObjectStore
from obsigen.retention.lock import _file_lock, _named_lock, retention_lock
from obsigen.retention.scheduler import RetentionScheduler


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url)
    yield engine
    await engine.dispose()


def scheduler_for(
    engine: AsyncEngine, tmp_path: Path, sink: ListSink, **settings: object
) -> RetentionScheduler:
    return RetentionScheduler(
        engine=engine,
        sessions=make_sessionmaker(engine),
        store=LocalObjectStore(tmp_path / "objects"),
        recorder=AuditRecorder([sink]),
        settings=RetentionSettings.model_validate(settings),
        first_delay_s=0,
    )


async def until(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    for _ in range(int(timeout_s / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


async def test_the_scheduler_purges_on_its_interval_and_stops_on_shutdown(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    sessions = make_sessionmaker(engine)
    tenant_id, name = await new_tenant(sessions)
    old = await add_conversation(sessions, tenant_id, days_ago(10))
    sink = ListSink()
    scheduler = scheduler_for(
        engine,
        tmp_path,
        sink,
        interval_hours=0.0001,  # 0.36 s
        tenant_overrides={name: {"conversations_days": 7}},
    )

    scheduler.start()
    await until(lambda: scheduler.runs >= 2)
    await scheduler.stop()

    assert not scheduler.running
    assert not await row_exists(sessions, Conversation, old)
    assert [
        e.data["removed"]["conversations"] for e in sink.events if e.tenant_id == tenant_id
    ] == [1]
    runs = scheduler.runs
    await asyncio.sleep(0.5)
    assert scheduler.runs == runs
    # Stopped means the lock is free again for the next process.
    async with retention_lock(engine) as acquired:
        assert acquired


async def test_interval_zero_disables_the_scheduler(engine: AsyncEngine, tmp_path: Path) -> None:
    scheduler = scheduler_for(engine, tmp_path, ListSink(), interval_hours=0)
    scheduler.start()
    assert not scheduler.running
    await scheduler.stop()
    assert scheduler.runs == 0


async def test_a_run_is_skipped_while_another_process_holds_the_lock(
    engine: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    # Another replica: its own engine (own connection, own open lock file).
    other = make_engine(database_url)
    scheduler = scheduler_for(engine, tmp_path, ListSink(), interval_hours=24)
    try:
        if engine.dialect.name == "sqlite":
            with _file_lock(other) as held:
                assert held
                assert await scheduler.run_once() is None
        else:
            async with _named_lock(other) as held:
                assert held
                assert await scheduler.run_once() is None
    finally:
        await other.dispose()
    assert scheduler.skipped == 1
    assert scheduler.runs == 0
    assert await scheduler.run_once() is not None
    assert scheduler.runs == 1


async def test_one_process_never_runs_two_purges_at_once(engine: AsyncEngine) -> None:
    async with retention_lock(engine) as first, retention_lock(engine) as second:
        assert first
        assert not second
