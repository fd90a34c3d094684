"""The operations short-lived state needs; each is one atomic step on both backends."""

from __future__ import annotations

from typing import Protocol

from obsigen.errors import Unavailable


class StoreUnavailable(Unavailable):
    """The shared store (Redis) cannot be reached: callers fail closed with 503."""

    type_slug = "store-unavailable"
    title = "Session store unavailable"


class EphemeralStore(Protocol):
    name: str

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl_s: float) -> None: ...

    async def claim(self, key: str, ttl_s: float, value: bytes = b"1") -> bool:
        """Set ``key`` only if absent; True for the first caller. A used-once marker."""
        ...

    async def take(self, key: str) -> bytes | None:
        """Get and delete in one step: a challenge can be redeemed once, by one caller."""
        ...

    async def incr(self, key: str, ttl_s: float) -> int:
        """Add one; the first increment starts the TTL (a fixed window from the first event)."""
        ...

    async def ttl(self, key: str) -> float | None:
        """Seconds left, or None when the key is absent."""
        ...

    async def delete(self, *keys: str) -> int: ...

    async def aclose(self) -> None: ...
