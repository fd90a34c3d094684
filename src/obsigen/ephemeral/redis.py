"""Redis backend: every server process sees the same counters and used-once markers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from obsigen.ephemeral.interfaces import StoreUnavailable

T = TypeVar("T")

# INCR then set the TTL only on the first increment, atomically.
_INCR = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
"""


def _ms(ttl_s: float) -> int:
    return max(1, int(ttl_s * 1000))


def _bytes(value: bytes | str | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value


class RedisStore:
    name = "redis"

    def __init__(self, redis: Redis, prefix: str = "obsigen:") -> None:
        self._redis = redis
        self._prefix = prefix
        self._incr = redis.register_script(_INCR)

    async def _call(self, op: Callable[[], Awaitable[T]]) -> T:
        try:
            return await op()
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise StoreUnavailable("the session store (Redis) is unreachable") from exc

    def _k(self, key: str) -> str:
        return self._prefix + key

    async def get(self, key: str) -> bytes | None:
        value = await self._call(lambda: self._redis.get(self._k(key)))
        return _bytes(value)

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        await self._call(lambda: self._redis.set(self._k(key), value, px=_ms(ttl_s)))

    async def claim(self, key: str, ttl_s: float, value: bytes = b"1") -> bool:
        done = await self._call(
            lambda: self._redis.set(self._k(key), value, px=_ms(ttl_s), nx=True)
        )
        return bool(done)

    async def take(self, key: str) -> bytes | None:
        value = await self._call(lambda: self._redis.getdel(self._k(key)))
        return _bytes(value)

    async def incr(self, key: str, ttl_s: float) -> int:
        count = await self._call(lambda: self._incr(keys=[self._k(key)], args=[_ms(ttl_s)]))
        return int(count)

    async def ttl(self, key: str) -> float | None:
        ms = await self._call(lambda: self._redis.pttl(self._k(key)))
        return None if ms < 0 else ms / 1000

    async def delete(self, *keys: str) -> int:
        if not keys:
            return 0
        count = await self._call(lambda: self._redis.delete(*(self._k(k) for k in keys)))
        return int(count)

    async def aclose(self) -> None:
        # The Redis client belongs to Services, which closes it.
        return None
