"""The one-trip aiosqlite adapter: a statement (and its transaction's BEGIN) is one call on
aiosqlite's thread, with the same rows, counts, errors and locking as the stock adapter."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from obsigen.db import engine as engine_module
from obsigen.db.engine import make_engine, make_sessionmaker, sync_twin
from obsigen.db.models import Tenant
from obsigen.db.sqlite_driver import OneTripDBAPI, one_trip_dbapi

SCHEMA = "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, name TEXT UNIQUE, n INTEGER)"


@pytest.fixture(autouse=True)
def one_trip_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """The adapter is tested here whether or not engines use it by default."""
    monkeypatch.setattr(engine_module, "ONE_TRIP_SQLITE", True)


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'driver.db'}"


@pytest.fixture
async def engine(url: str) -> AsyncIterator[AsyncEngine]:
    made = make_engine(url)
    async with made.begin() as conn:
        await conn.execute(text(SCHEMA))
    yield made
    await made.dispose()


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of each function sent to an aiosqlite thread from now on."""
    sent: list[str] = []
    original = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: Callable[[], Any]) -> Any:
        sent.append(getattr(getattr(fn, "func", fn), "__name__", repr(fn)))
        return await original(self, fn)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    return sent


async def test_sqlite_engines_use_the_one_trip_adapter(engine: AsyncEngine) -> None:
    assert isinstance(engine.dialect.dbapi, OneTripDBAPI)


async def test_a_statement_is_one_trip_and_begin_rides_with_the_first(
    engine: AsyncEngine, trips: list[str]
) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))  # warms the connection up (pragmas)
        await conn.rollback()
        trips.clear()
        async with conn.begin():
            await conn.execute(text("INSERT INTO t (name, n) VALUES ('a', 1)"))
            rows = (await conn.execute(text("SELECT name, n FROM t"))).all()
        # BEGIN IMMEDIATE + INSERT, SELECT, COMMIT: three trips (the stock adapter: ten).
        assert trips == ["_run", "_run", "commit"]
    assert [tuple(row) for row in rows] == [("a", 1)]
    # Returned to the pool after its commit: no transaction is open, no rollback is sent.
    assert trips == ["_run", "_run", "commit"]


async def test_a_transaction_that_ran_nothing_costs_no_trip(
    engine: AsyncEngine, trips: list[str]
) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
        await conn.rollback()
        trips.clear()
        async with conn.begin():
            pass
    assert trips == []


async def test_rows_counts_and_ids_match_the_stock_adapter(url: str, engine: AsyncEngine) -> None:
    stock = create_async_engine(url, connect_args={"isolation_level": None})
    try:
        results = []
        for prefix, target in (("fast", engine), ("stock", stock)):
            async with target.begin() as conn:
                inserted = await conn.execute(
                    text("INSERT INTO t (name, n) VALUES (:name, :n)"), {"name": prefix, "n": 1}
                )
                many = await conn.execute(
                    text("INSERT INTO t (name, n) VALUES (:name, :n)"),
                    [{"name": f"{prefix}-{i}", "n": i} for i in range(3)],
                )
                updated = await conn.execute(
                    text("UPDATE t SET n = n + 10 WHERE name LIKE :p"), {"p": f"{prefix}-%"}
                )
                selected = await conn.execute(
                    text("SELECT name, n FROM t WHERE name LIKE :p ORDER BY name"),
                    {"p": f"{prefix}%"},
                )
                keys = list(selected.keys())
                rows = [(name.removeprefix(prefix), n) for name, n in selected.all()]
                empty = (await conn.execute(text("SELECT name FROM t WHERE 0"))).all()
            results.append((inserted.rowcount, many.rowcount, updated.rowcount, keys, rows, empty))
            assert inserted.lastrowid is not None
        assert results[0] == results[1]
        assert results[0][:3] == (1, 3, 3)
    finally:
        await stock.dispose()


async def test_errors_are_mapped_and_the_transaction_rolls_back(engine: AsyncEngine) -> None:
    async def insert_twice() -> None:
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO t (name, n) VALUES ('dup', 1)"))
            await conn.execute(text("INSERT INTO t (name, n) VALUES ('dup', 2)"))

    with pytest.raises(IntegrityError):
        await insert_twice()
    async with engine.connect() as conn:
        count = (await conn.execute(text("SELECT count(*) FROM t WHERE name = 'dup'"))).scalar()
    assert count == 0


async def test_the_write_lock_is_taken_with_the_first_statement(url: str) -> None:
    holder = make_engine(url)
    waiter = create_async_engine(url, connect_args={"isolation_level": None, "timeout": 0.2})
    try:
        async with holder.begin() as conn:
            await conn.execute(text(SCHEMA))
        async with holder.connect() as conn:
            transaction = await conn.begin()
            await conn.execute(text("SELECT 1"))  # BEGIN IMMEDIATE went out with it
            async with waiter.connect() as other:
                with pytest.raises(OperationalError, match="locked"):
                    await other.execute(text("BEGIN IMMEDIATE"))
            await transaction.rollback()
        async with waiter.connect() as other:  # free again
            await other.execute(text("BEGIN IMMEDIATE"))
            await other.execute(text("ROLLBACK"))
    finally:
        await holder.dispose()
        await waiter.dispose()


async def test_concurrent_writers_queue_on_the_lock_instead_of_failing(
    engine: AsyncEngine,
) -> None:
    async def add(n: int) -> None:
        async with engine.begin() as conn:
            current = (await conn.execute(text("SELECT count(*) FROM t"))).scalar_one()
            await asyncio.sleep(0)
            await conn.execute(
                text("INSERT INTO t (name, n) VALUES (:name, :n)"), {"name": f"w{n}", "n": current}
            )

    await asyncio.gather(*(add(n) for n in range(12)))
    async with engine.connect() as conn:
        seen = sorted((await conn.execute(text("SELECT n FROM t"))).scalars())
    # Each writer read the count under the write lock: no two saw the same.
    assert seen == list(range(12))


async def test_the_orm_works_through_it(engine: AsyncEngine, url: str) -> None:
    from obsigen.db.migrate import upgrade_to_head

    await upgrade_to_head(engine)
    sessions = make_sessionmaker(engine)
    async with sessions.begin() as session:
        session.add(Tenant(name="driver-test"))
    async with sessions() as session:
        names = list(await session.scalars(text("SELECT name FROM tenants")))
    assert names == ["driver-test"]


async def test_without_the_private_hook_the_stock_adapter_is_kept(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.delattr(aiosqlite.Connection, "_execute")
    assert one_trip_dbapi() is None
    monkeypatch.undo()
    assert one_trip_dbapi() is not None


def test_a_sync_twin_is_made_only_for_a_file_database(url: str) -> None:
    file_engine = make_engine(url)
    twin = sync_twin(file_engine)
    assert twin is not None
    assert twin.url.database == file_engine.url.database
    twin.dispose()
    assert sync_twin(make_engine("sqlite+aiosqlite:///:memory:")) is None
    assert sync_twin(make_engine("sqlite+aiosqlite://")) is None
    assert sync_twin(make_engine("mysql+asyncmy://u@127.0.0.1:3306/x")) is None


async def test_a_statement_cancelled_on_its_trip_leaves_no_transaction_open(
    url: str, engine: AsyncEngine
) -> None:
    # The trip cannot be stopped: it runs BEGIN and the INSERT after its caller gave up, so
    # the rollback must still be sent, and run after it.
    path = url.removeprefix("sqlite+aiosqlite:///")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")

    async def insert() -> None:
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO t (name, n) VALUES ('cancelled', 1)"))

    task = asyncio.create_task(insert())
    await asyncio.sleep(0.3)  # its trip now waits for the lock on aiosqlite's thread
    task.cancel()
    await asyncio.sleep(0.2)
    holder.execute("ROLLBACK")  # now the trip goes through: BEGIN, INSERT
    holder.close()
    # Still a cancellation (not an outage: a caught Exception would swallow the cancel).
    with pytest.raises(asyncio.CancelledError):
        await task

    async with engine.connect() as conn:
        found = await conn.execute(text("SELECT count(*) FROM t WHERE name = 'cancelled'"))
        assert found.scalar_one() == 0
    probe = sqlite3.connect(path, isolation_level=None, timeout=2)
    try:
        probe.execute("BEGIN IMMEDIATE")  # nobody kept the write lock
        probe.execute("ROLLBACK")
    finally:
        probe.close()
