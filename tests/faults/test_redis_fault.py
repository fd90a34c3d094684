"""Redis (a private ``redis-server``) SIGKILLed under chat traffic, then started again on the
same port, empty: 503 ``store-unavailable`` with ``Retry-After`` meanwhile (the rate limiter
fails closed), nothing answered lost, and the same server answering again once it is back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.openai_upstream import FakeUpstream
from tests.fakes.private_redis import PrivateRedis, private_redis, redis_server_binary
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

# The client's socket timeouts (services.py) are 2 s; then slack for the loaded machine.
BOUND_S = 10
DOWN = {503: {"store-unavailable"}}


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[PrivateRedis]:
    require_tool("redis-server", redis_server_binary() is not None)
    with private_redis(tmp_path) as server:
        yield server


async def test_redis_killed_during_chat(
    tmp_path: Path, redis_server: PrivateRedis, upstream_server: tuple[FakeUpstream, str]
) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'obsigen.db'}"
    config = base_config(tmp_path / "var", database_url, upstream_server[1])
    config["storage"]["redis_url"] = redis_server.url
    config["ratelimit"]["on_store_down"] = "closed"
    traffic = Traffic()

    def since(t: float, status: int, count: int = 1) -> bool:
        return sum(o.status == status for o in traffic.outcomes if o.started >= t) >= count

    async with deployed(tmp_path, config) as d:
        lanes = asyncio.create_task(
            traffic.lanes(3, lambda client, n: chat_once(client, d, n), timeout_s=BOUND_S + 10)
        )
        try:
            start = time.monotonic()
            await until(lambda: since(start, 200, 3), 30, "no answers before the fault")
            killed = time.monotonic()
            await asyncio.to_thread(redis_server.kill)
            await until(lambda: since(killed, 503, 3), BOUND_S, "no 503 while Redis was gone")
            restarted = time.monotonic()
            await asyncio.to_thread(redis_server.restart)
            await until(lambda: since(restarted, 200, 3), 30, "no answers after Redis came back")
        finally:
            traffic.stop.set()
            await lanes
        d.server.assert_recovered_in_place()
        print(f"\nredis fault: {statuses(traffic.outcomes)}")
        assert_clear_errors(traffic.outcomes, DOWN, bound_s=BOUND_S)
        refused = [o for o in traffic.outcomes if o.status == 503]
        assert refused
        assert {o.retry_after for o in refused} == {"5"}
        counts = await assert_chats_stored(d, traffic.outcomes)
        print(f"redis fault: {counts}")
    d.server.audit_verify()
