"""What only the Redis backend has: key TTLs, what the keys hold, and failing closed."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from redis.asyncio import Redis

from obsigen.ephemeral.interfaces import StoreUnavailable
from obsigen.sessions.manager import RefreshRejected, SessionManager
from obsigen.sessions.redis_store import RedisSessionStore
from obsigen.sessions.store import make_session_store

pytestmark = pytest.mark.redis

IDLE_S = 300
MAX_S = 3600


@pytest.fixture
def manager(redis_client: Redis, redis_prefix: str) -> SessionManager:
    return SessionManager(
        RedisSessionStore(redis_client, prefix=redis_prefix),
        refresh_ttl_s=600,
        idle_timeout_s=IDLE_S,
        session_max_s=MAX_S,
    )


async def _keys(redis: Redis, prefix: str) -> list[str]:
    return sorted([k.decode() async for k in redis.scan_iter(match=f"{prefix}*")])


async def _dump(redis: Redis, key: str) -> bytes:
    kind = (await redis.type(key)).decode()
    if kind == "hash":
        items = await redis.hgetall(key)
        return b" ".join(x for item in items.items() for x in item)
    if kind == "zset":
        return b" ".join(await redis.zrange(key, 0, -1))
    return b" ".join(sorted(await redis.smembers(key)))


async def test_every_key_has_a_ttl_within_its_deadline(
    manager: SessionManager, redis_client: Redis, redis_prefix: str
) -> None:
    record, token = await manager.start(tenant_id="t1", user_id="u1", amr=["pwd"])
    await manager.refresh(token)  # creates the spent-hash set too

    keys = await _keys(redis_client, redis_prefix)
    assert len(keys) == 3  # session hash, spent hashes, per-user index
    for key in keys:
        ttl_ms = await redis_client.pttl(key)
        limit_s = IDLE_S if f":s:{record.session_id}" in key else MAX_S
        assert 0 < ttl_ms <= limit_s * 1000, key


async def test_no_refresh_token_is_stored_in_clear(
    manager: SessionManager, redis_client: Redis, redis_prefix: str
) -> None:
    _, first = await manager.start(tenant_id="t1", user_id="u1", amr=["pwd"])
    _, second = await manager.refresh(first)

    for key in await _keys(redis_client, redis_prefix):
        stored = await _dump(redis_client, key)
        for token in (first, second):
            assert token.rsplit(".", 1)[1].encode() not in stored
            assert token.encode() not in stored


async def test_ending_sessions_leaves_no_keys(
    manager: SessionManager, redis_client: Redis, redis_prefix: str
) -> None:
    one, _ = await manager.start(tenant_id="t1", user_id="u1", amr=["pwd"])
    _, token = await manager.start(tenant_id="t1", user_id="u2", amr=["pwd"])
    await manager.refresh(token)
    for _ in range(2):
        await manager.start(tenant_id="t1", user_id="u3", amr=["pwd"])

    await manager.end(one.session_id)
    with pytest.raises(RefreshRejected):
        await manager.refresh(token)  # reuse ends u2's session
    await manager.end_all("t1", "u3")

    assert await _keys(redis_client, redis_prefix) == []


async def test_redis_expires_the_keys_itself(redis_client: Redis, redis_prefix: str) -> None:
    # A frozen clock: the scripts' own deadline checks never fire, so only the key TTL that
    # Redis enforces in real time can end these sessions.
    frozen = time.time()
    manager = SessionManager(
        RedisSessionStore(redis_client, prefix=redis_prefix),
        refresh_ttl_s=60,
        idle_timeout_s=1,
        session_max_s=60,
        clock=lambda: frozen,
    )
    touched, _ = await manager.start(tenant_id="t1", user_id="u1", amr=["pwd"])
    idle, _ = await manager.start(tenant_id="t1", user_id="u1", amr=["pwd"])

    await asyncio.sleep(0.6)
    assert await manager.touch(touched.session_id) is not None
    await asyncio.sleep(0.6)  # 1.2 s after start: alive only because touch restarted the TTL

    assert await manager.touch(touched.session_id) is not None
    assert await manager.touch(idle.session_id) is None
    assert await manager.sessions_of("t1", "u1") == [touched]


@pytest.fixture
async def unreachable() -> AsyncIterator[SessionManager]:
    # A loopback port that was just free: connecting is refused at once.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = Redis.from_url(f"redis://127.0.0.1:{port}/0")
    yield SessionManager(
        make_session_store(client), refresh_ttl_s=600, idle_timeout_s=IDLE_S, session_max_s=MAX_S
    )
    await client.aclose()


async def test_an_unreachable_redis_fails_closed(unreachable: SessionManager) -> None:
    sid = "A" * 22
    token = f"ort_{sid}.{'B' * 43}"
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: unreachable.start(tenant_id="t1", user_id="u1", amr=["pwd"]),
        lambda: unreachable.touch(sid),
        lambda: unreachable.refresh(token),
        lambda: unreachable.add_factors(sid, ["otp"]),
        lambda: unreachable.end(sid),
        lambda: unreachable.end_all("t1", "u1"),
        lambda: unreachable.sessions_of("t1", "u1"),
    ]
    for call in calls:
        with pytest.raises(StoreUnavailable) as caught:
            await call()
        assert caught.value.status == 503
