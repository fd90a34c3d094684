"""A remote audit sink (an OTLP/HTTP collector) gone under chat traffic and back: clients
never notice (every chat answered, none slowed past the bound), the events wait in the
spool, and once the collector is back it has every event of the database's record."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from obsigen.db.engine import make_engine
from tests.fakes.audit_receivers import OtlpHttpReceiver
from tests.fakes.openai_upstream import FakeUpstream
from tests.faults.conftest import (
    Traffic,
    assert_chats_stored,
    assert_clear_errors,
    base_config,
    chat_once,
    deployed,
    statuses,
    until,
)

# A dead collector fails an attempt fast; the spool retries often (tests/integration/audit).
TUNING = "timeout_s=1&backoff_s=0.05&max_backoff_s=0.3&close_timeout_s=2&fsync=never"
BOUND_S = 10


@pytest.fixture
def collector() -> Iterator[OtlpHttpReceiver]:
    receiver = OtlpHttpReceiver()
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()


async def recorded_event_ids(database_url: str) -> set[str]:
    engine = make_engine(database_url)
    try:
        async with engine.connect() as conn:
            return set((await conn.scalars(text("SELECT event_id FROM audit_events"))).all())
    finally:
        await engine.dispose()


async def test_audit_sink_down_during_chat(
    tmp_path: Path, collector: OtlpHttpReceiver, upstream_server: tuple[FakeUpstream, str]
) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'obsigen.db'}"
    config = base_config(tmp_path / "var", database_url, upstream_server[1])
    sink = f"otlp+http://127.0.0.1:{collector.port}/v1/logs?{TUNING}"
    config["audit"] = {"sinks": ["database", "file", sink]}
    traffic = Traffic()

    def answered_since(t: float, count: int = 3) -> bool:
        return sum(o.status == 200 for o in traffic.outcomes if o.started >= t) >= count

    async with deployed(tmp_path, config) as d:
        lanes = asyncio.create_task(
            traffic.lanes(3, lambda client, n: chat_once(client, d, n), timeout_s=BOUND_S + 10)
        )
        try:
            start = time.monotonic()
            await until(lambda: answered_since(start), 30, "no answers before the fault")
            await asyncio.to_thread(collector.stop)
            stopped = time.monotonic()
            stopped_with = collector.received_count()
            await until(lambda: answered_since(stopped, 6), 30, "no answers while it was down")
            await asyncio.to_thread(collector.start)
            restarted = time.monotonic()
            await until(lambda: answered_since(restarted), 30, "no answers after the restart")
        finally:
            traffic.stop.set()
            await lanes
        d.server.assert_recovered_in_place()
        print(f"\naudit sink fault: {statuses(traffic.outcomes)}")
        # The sink is a copy: its outage is none of the client's business.
        assert_clear_errors(traffic.outcomes, {}, bound_s=BOUND_S)
        await assert_chats_stored(d, traffic.outcomes)
        recorded = await recorded_event_ids(database_url)
        await until(
            lambda: recorded <= collector.event_ids(),
            30,
            f"{len(recorded - collector.event_ids())} recorded events never reached the sink",
        )
        assert collector.received_count() > stopped_with
        print(f"audit sink fault: {len(recorded)} events, all delivered")
    d.server.audit_verify()
