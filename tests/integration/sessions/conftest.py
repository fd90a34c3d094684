"""Redis on loopback for the session-store tests, under a key prefix per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from tests.conftest import port_open, require_service


@pytest.fixture
async def redis_client() -> AsyncIterator[Redis]:
    require_service("Redis on 127.0.0.1:6379", port_open("127.0.0.1", 6379))
    client = Redis(host="127.0.0.1", port=6379)
    yield client
    await client.aclose()


@pytest.fixture
async def redis_prefix(redis_client: Redis) -> AsyncIterator[str]:
    """A key prefix of this test alone; whatever it left behind is deleted afterwards."""
    prefix = f"obsigen:test:sess:{uuid.uuid4().hex}:"
    yield prefix
    keys = [key async for key in redis_client.scan_iter(match=f"{prefix}*")]
    if keys:
        await redis_client.delete(*keys)
