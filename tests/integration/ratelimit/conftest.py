"""Fixtures of the rate-limit tests: a Redis client and a key prefix of the test's own."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import BlockingConnectionPool, Redis
from tests.conftest import REDIS_URL, port_open, require_service


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    require_service("Redis on 127.0.0.1:6379", port_open("127.0.0.1", 6379))
    # As recommended for the platform (docs/ratelimit.md): a burst of concurrent requests
    # waits for a pooled connection instead of failing with "Too many connections".
    client = Redis.from_pool(
        BlockingConnectionPool.from_url(REDIS_URL, max_connections=32, timeout=5)
    )
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def prefix(redis: Redis) -> AsyncIterator[str]:
    """Keys of this test only, deleted afterwards (other tests and processes share Redis)."""
    name = f"test:rl:{uuid.uuid4().hex[:12]}:"
    yield name
    keys = [key async for key in redis.scan_iter(match=name + "*", count=1000)]
    if keys:
        await redis.delete(*keys)


@pytest.fixture
async def dead_redis() -> AsyncIterator[Redis]:
    """A client pointed at a loopback port nobody listens on: connections are refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_connect_timeout=1)
    try:
        yield client
    finally:
        await client.aclose()
