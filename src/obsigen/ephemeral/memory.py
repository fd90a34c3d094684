"""In-process backend for the embedded default (one server process) and unit tests."""

from __future__ import annotations

import time
from collections.abc import Callable


class MemoryStore:
    name = "memory"

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._data: dict[str, tuple[bytes, float]] = {}

    def _live(self, key: str) -> tuple[bytes, float] | None:
        item = self._data.get(key)
        if item is None:
            return None
        if item[1] <= self._clock():
            del self._data[key]
            return None
        return item

    def _sweep(self) -> None:
        # Amortised cleanup so abandoned keys do not accumulate without bound.
        if len(self._data) % 1024 == 0:
            now = self._clock()
            for key in [k for k, (_, exp) in self._data.items() if exp <= now]:
                del self._data[key]

    async def get(self, key: str) -> bytes | None:
        item = self._live(key)
        return None if item is None else item[0]

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        self._sweep()
        self._data[key] = (value, self._clock() + ttl_s)

    async def claim(self, key: str, ttl_s: float, value: bytes = b"1") -> bool:
        if self._live(key) is not None:
            return False
        await self.set(key, value, ttl_s)
        return True

    async def take(self, key: str) -> bytes | None:
        item = self._live(key)
        if item is None:
            return None
        del self._data[key]
        return item[0]

    async def incr(self, key: str, ttl_s: float) -> int:
        item = self._live(key)
        if item is None:
            await self.set(key, b"1", ttl_s)
            return 1
        count = int(item[0]) + 1
        self._data[key] = (str(count).encode(), item[1])
        return count

    async def ttl(self, key: str) -> float | None:
        item = self._live(key)
        return None if item is None else item[1] - self._clock()

    async def delete(self, *keys: str) -> int:
        return sum(self._data.pop(key, None) is not None for key in keys)

    async def aclose(self) -> None:
        self._data.clear()
