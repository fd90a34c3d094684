"""Token-layer fixtures: a software key provider in tmp_path on hand-moved clocks, key rings and
token services over it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from token_testkit import Clocks, CountingProvider

from obsigen.keys.interfaces import SigningAlg
from obsigen.keys.software import SoftwareKeyProvider
from obsigen.tokens.access import TokenService
from obsigen.tokens.keyring import KeyRing

ISSUER = "https://obsigen.test"
AUDIENCE = "obsigen-api"
TTL_S = 900
SKEW_S = 30


@pytest.fixture
def clocks() -> Clocks:
    return Clocks()


@pytest.fixture
async def software(tmp_path: Path, clocks: Clocks) -> AsyncIterator[SoftwareKeyProvider]:
    provider = SoftwareKeyProvider(tmp_path / "keys", clock=clocks.now)
    yield provider
    await provider.aclose()


@pytest.fixture
def counting(software: SoftwareKeyProvider) -> CountingProvider:
    return CountingProvider(software)


RingFactory = Callable[..., KeyRing]
ServiceFactory = Callable[..., TokenService]


@pytest.fixture
def make_ring(counting: CountingProvider, clocks: Clocks) -> RingFactory:
    """KeyRing over the counting provider (or another one), on the test's clocks."""

    def make(alg: SigningAlg = "ES256", provider: Any = None, **options: Any) -> KeyRing:
        return KeyRing(
            provider or counting, alg=alg, clock=clocks.monotonic, now=clocks.now, **options
        )

    return make


@pytest.fixture
def make_service(clocks: Clocks) -> ServiceFactory:
    def make(ring: KeyRing, **overrides: Any) -> TokenService:
        options: dict[str, Any] = {
            "issuer": ISSUER,
            "audience": AUDIENCE,
            "access_ttl_s": TTL_S,
            "clock_skew_s": SKEW_S,
            **overrides,
        }
        return TokenService(ring, clock=clocks.time, **options)

    return make
