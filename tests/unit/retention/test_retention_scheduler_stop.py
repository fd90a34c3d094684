"""Stopping the scheduler: a run in progress gets a grace period, then is cancelled; a run
that fails does not end the schedule."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from obsigen.config import RetentionSettings
from obsigen.db.engine import make_engine, make_sessionmaker
from obsigen.retention.purge import TenantPurge
from obsigen.retention.scheduler import RetentionScheduler


@pytest.fixture
async def scheduler() -> AsyncIterator[RetentionScheduler]:
    engine = make_engine("sqlite+aiosqlite://")
    yield RetentionScheduler(
        engine=engine,
        sessions=make_sessionmaker(engine),
        store=None,
        recorder=None,
        settings=RetentionSettings(interval_hours=0.00001),
        first_delay_s=0,
    )
    await engine.dispose()


def test_the_first_run_comes_soon_after_start_up() -> None:
    engine = make_engine("sqlite+aiosqlite://")
    settings = RetentionSettings(interval_hours=24)
    made = RetentionScheduler(
        engine=engine, sessions=make_sessionmaker(engine), store=None, recorder=None,
        settings=settings,
    )  # fmt: skip
    assert made.interval_s == 24 * 3600
    assert made.first_delay_s == 300


async def test_a_hung_run_is_cancelled_after_the_grace_period(
    scheduler: RetentionScheduler, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def hang() -> list[TenantPurge] | None:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return None

    monkeypatch.setattr(scheduler, "run_once", hang)
    scheduler.start()
    await asyncio.wait_for(started.wait(), 5)
    await asyncio.wait_for(scheduler.stop(grace_s=0.05), 5)
    assert cancelled.is_set()
    assert not scheduler.running


async def test_a_failed_run_does_not_end_the_schedule(
    scheduler: RetentionScheduler, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0
    twice = asyncio.Event()

    async def fail() -> list[TenantPurge] | None:
        nonlocal calls
        calls += 1
        if calls >= 2:
            twice.set()
        raise RuntimeError("database gone")

    monkeypatch.setattr(scheduler, "run_once", fail)
    scheduler.start()
    await asyncio.wait_for(twice.wait(), 5)
    await scheduler.stop()
    assert not scheduler.running
