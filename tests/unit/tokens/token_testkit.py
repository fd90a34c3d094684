"""Helpers of the token-layer tests: clocks the tests move by hand, and a key provider
wrapper that counts the calls reaching the backend."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from obsigen.keys.interfaces import KeyInfo, KeyProvider, KeyState, SigningAlg

START = 1_800_000_000.0


@dataclass
class Clocks:
    """One wall clock (epoch seconds) for tokens and key retirement, one monotonic clock for
    the key ring's caches: moved apart, they show which of the two a behaviour depends on."""

    wall: float = START
    mono: float = 1000.0

    def time(self) -> float:
        return self.wall

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.wall, UTC)

    def monotonic(self) -> float:
        return self.mono


@dataclass
class CountingProvider:
    """A KeyProvider that forwards to a real one and counts what reaches it."""

    inner: KeyProvider
    calls: dict[str, int] = field(default_factory=dict)
    # Makes list_keys fail, as a KMS or HSM that cannot be reached would.
    list_fails: bool = False

    @property
    def name(self) -> str:
        return self.inner.name

    def _count(self, op: str) -> None:
        self.calls[op] = self.calls.get(op, 0) + 1

    def total(self) -> int:
        return sum(self.calls.values())

    async def create_signing_key(self, alg: SigningAlg) -> KeyInfo:
        self._count("create_signing_key")
        return await self.inner.create_signing_key(alg)

    async def sign(self, kid: str, message: bytes) -> bytes:
        self._count("sign")
        return await self.inner.sign(kid, message)

    async def verify(self, kid: str, message: bytes, signature: bytes) -> bool:
        self._count("verify")
        return await self.inner.verify(kid, message, signature)

    async def public_jwk(self, kid: str) -> dict[str, str]:
        self._count("public_jwk")
        return await self.inner.public_jwk(kid)

    async def list_keys(self) -> list[KeyInfo]:
        self._count("list_keys")
        if self.list_fails:
            raise ConnectionError("provider unreachable")
        return await self.inner.list_keys()

    async def get_key(self, kid: str) -> KeyInfo:
        self._count("get_key")
        return await self.inner.get_key(kid)

    async def set_state(
        self, kid: str, state: KeyState, retire_after: datetime | None = None
    ) -> KeyInfo:
        self._count("set_state")
        return await self.inner.set_state(kid, state, retire_after)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
