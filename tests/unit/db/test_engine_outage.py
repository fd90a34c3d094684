"""A database outage is ``DatabaseUnavailable`` (503), and only an outage: SQL errors keep
their own types; deferred writes land once the database answers again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError
from tests.fakes.private_redis import free_port

from obsigen.db import deferred
from obsigen.db.engine import make_engine
from obsigen.errors import DatabaseUnavailable


async def test_a_refused_mariadb_connection_is_unavailable() -> None:
    engine = make_engine(f"mysql+asyncmy://root@127.0.0.1:{free_port()}/x?connect_timeout=2")
    try:
        with pytest.raises(DatabaseUnavailable) as caught:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
    finally:
        await engine.dispose()
    # The driver's message (host, port) stays in the log, out of the client's answer.
    assert "127.0.0.1" not in caught.value.detail


async def test_an_unopenable_sqlite_file_is_unavailable(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'obsigen.db'}")
    try:
        with pytest.raises(DatabaseUnavailable):
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
    finally:
        await engine.dispose()


async def test_a_sql_error_is_not_an_outage(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'obsigen.db'}")
    try:
        with pytest.raises(OperationalError):
            async with engine.connect() as conn:
                await conn.execute(text("SELECT * FROM no_such_table"))
        async with engine.connect() as conn:  # the engine is fine afterwards
            assert (await conn.execute(text("SELECT 1"))).scalar() == 1
    finally:
        await engine.dispose()


async def connect_params(url: str) -> dict[str, Any]:
    """What the driver is asked to connect with (the port is closed: nothing answers)."""
    engine = make_engine(url)
    seen: dict[str, Any] = {}

    @event.listens_for(engine.sync_engine, "do_connect")
    def capture(dialect: Any, record: Any, cargs: Any, cparams: dict[str, Any]) -> None:
        seen.update(cparams)

    try:
        with pytest.raises(DatabaseUnavailable):
            async with engine.connect():
                pass
    finally:
        await engine.dispose()
    return seen


async def test_mariadb_waits_are_bounded_by_default_and_the_url_decides() -> None:
    port = free_port()
    default = await connect_params(f"mysql+asyncmy://root@127.0.0.1:{port}/x")
    assert (default["connect_timeout"], default["read_timeout"]) == (10, 60)
    given = await connect_params(
        f"mysql+asyncmy://root@127.0.0.1:{port}/x?read_timeout=7&connect_timeout=1"
    )
    assert (given["connect_timeout"], given["read_timeout"]) == (1, 7)


async def test_a_deferred_write_lands_once_the_database_is_back() -> None:
    calls: list[int] = []

    async def write() -> None:
        calls.append(1)
        if len(calls) < 3:
            raise DatabaseUnavailable("down")

    await deferred.retry_when_back(write, "test write", delays_s=(0.01, 0.01, 0.01, 0.01))
    assert len(calls) == 3


async def test_a_deferred_write_gives_up_on_other_errors() -> None:
    calls: list[int] = []

    async def write() -> None:
        calls.append(1)
        raise ValueError("a bug, not an outage")

    task = deferred.retry_when_back(write, "test write", delays_s=(0.01, 0.01, 0.01))
    await task
    assert len(calls) == 1
    assert task not in deferred._pending
