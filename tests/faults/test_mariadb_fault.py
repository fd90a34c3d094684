"""MariaDB killed (SIGKILL) and frozen (SIGSTOP) under chat traffic, then back on the same
port and datadir: 503 ``database-unavailable`` meanwhile, nothing answered lost, the audit
chain intact, and the same server process answering again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from obsigen.db.engine import make_engine
from tests.fakes.openai_upstream import FakeUpstream
from tests.fakes.private_mariadb import PrivateMariaDB, mariadb_binaries, private_mariadb
from tests.faults.conftest import (
    Traffic,
    assert_chats_stored,
    assert_clear_errors,
    base_config,
    chat_once,
    deployed,
    require_tool,
    statuses,
    until,
)

CONNECT_TIMEOUT_S = 2
READ_TIMEOUT_S = 3
# A request may meet the outage at a pre-ping, a reconnect (connect + greeting) and again
# when the turn records its failure: a few timeouts in a row, never an open-ended wait.
BOUND_S = 4 * (CONNECT_TIMEOUT_S + READ_TIMEOUT_S)
DOWN = {503: {"database-unavailable"}}


@pytest.fixture
def mariadb(tmp_path: Path) -> Iterator[PrivateMariaDB]:
    require_tool("mariadbd and mariadb-install-db", mariadb_binaries() is not None)
    with private_mariadb(tmp_path / "mariadb") as server:
        yield server


async def make_database(server: PrivateMariaDB) -> str:
    engine = make_engine(server.server_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE DATABASE obsigen CHARACTER SET utf8mb4"))
    finally:
        await engine.dispose()
    return (
        f"{server.server_url}obsigen?charset=utf8mb4"
        f"&connect_timeout={CONNECT_TIMEOUT_S}&read_timeout={READ_TIMEOUT_S}"
    )


async def test_database_killed_then_frozen_during_chat(
    tmp_path: Path,
    mariadb: PrivateMariaDB,
    upstream_server: tuple[FakeUpstream, str],
    upstream: FakeUpstream,
) -> None:
    url = await make_database(mariadb)
    config = base_config(tmp_path / "var", url, upstream_server[1])
    traffic = Traffic()

    def failed_since(t: float) -> bool:
        return any(o.status == 503 for o in traffic.outcomes if o.started >= t)

    def answered_since(t: float, count: int = 3) -> bool:
        return sum(o.status == 200 for o in traffic.outcomes if o.started >= t) >= count

    async with deployed(tmp_path, config) as d:
        lanes = asyncio.create_task(
            traffic.lanes(3, lambda client, n: chat_once(client, d, n), timeout_s=BOUND_S + 10)
        )
        try:
            start = time.monotonic()
            await until(lambda: answered_since(start), 30, "no answers before the fault")

            killed = time.monotonic()
            await asyncio.to_thread(mariadb.kill)
            await until(lambda: failed_since(killed), BOUND_S, "no 503 while the database died")
            await asyncio.sleep(1.0)
            restarted = time.monotonic()
            await asyncio.to_thread(mariadb.start)
            await until(
                lambda: answered_since(restarted), 60, "no answers after the database restarted"
            )

            frozen = time.monotonic()
            mariadb.freeze()
            await until(lambda: failed_since(frozen), BOUND_S + 5, "no 503 while frozen")
            thawed = time.monotonic()
            mariadb.thaw()
            await until(lambda: answered_since(thawed), 60, "no answers after the thaw")
        finally:
            mariadb.thaw()
            traffic.stop.set()
            await lanes
        d.server.assert_recovered_in_place()
        print(f"\nmariadb fault: {statuses(traffic.outcomes)}")
        print(f"mariadb fault: slowest {max(o.elapsed for o in traffic.outcomes):.1f} s")
        assert_clear_errors(traffic.outcomes, DOWN, bound_s=BOUND_S)
        assert any(o.status == 503 for o in traffic.between(killed, restarted))
        assert any(o.status == 503 for o in traffic.between(frozen, thawed))
        assert {o.retry_after for o in traffic.outcomes if o.status == 503} == {"5"}
        counts = await assert_chats_stored(d, traffic.outcomes)
        print(f"mariadb fault: {counts}")
        assert counts["answered"] >= 9, counts
    d.server.audit_verify()
