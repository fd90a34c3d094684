"""One-time SSO codes: single use, short-lived, bound to tenant and browser, sealed at rest;
on the in-process store (with a fake clock) and on a real Redis."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from tests.conftest import REDIS_URL, port_open, require_service

from obsigen.ephemeral.interfaces import EphemeralStore
from obsigen.ephemeral.memory import MemoryStore
from obsigen.ephemeral.redis import RedisStore
from obsigen.federation import sso_codes
from obsigen.federation.sso_codes import CODE_TTL_S, SsoCodeRefused, SsoCodes, code_key

PAYLOAD = {"tokens": {"access_token": "at-secret", "refresh_token": "rt-secret"}, "return_to": None}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[EphemeralStore]:
    if request.param == "memory":
        yield MemoryStore()
        return
    require_service("Redis on 127.0.0.1:6379", port_open("127.0.0.1", 6379))
    redis = Redis.from_url(REDIS_URL)
    try:
        yield RedisStore(redis, prefix=f"test-{uuid.uuid4().hex[:8]}:")
    finally:
        await redis.aclose()


async def test_a_code_redeems_once_for_its_tenant_and_browser(store: EphemeralStore) -> None:
    codes = SsoCodes(store)
    issued = await codes.issue("tenant-a", PAYLOAD)

    assert await codes.redeem(issued.code, "tenant-a", issued.browser_binding) == PAYLOAD
    with pytest.raises(SsoCodeRefused):
        await codes.redeem(issued.code, "tenant-a", issued.browser_binding)


async def test_codes_are_long_random_and_distinct(store: EphemeralStore) -> None:
    codes = SsoCodes(store)
    issued = [await codes.issue("t", PAYLOAD) for _ in range(20)]

    assert len({i.code for i in issued}) == 20
    # token_urlsafe(32): 256 bits, far above the 128 the code needs against guessing.
    assert all(len(i.code) == 43 for i in issued)
    assert len({i.browser_binding for i in issued}) == 20


async def test_the_store_holds_neither_the_code_nor_the_tokens(store: EphemeralStore) -> None:
    codes = SsoCodes(store)
    issued = await codes.issue("tenant-a", PAYLOAD)

    raw = await store.get(code_key(issued.code))
    assert raw is not None
    assert issued.code.encode() not in raw
    assert issued.code not in code_key(issued.code)
    assert b"at-secret" not in raw
    assert b"rt-secret" not in raw
    assert issued.browser_binding.encode() not in raw
    ttl = await store.ttl(code_key(issued.code))
    assert ttl is not None
    assert 0 < ttl <= CODE_TTL_S


@pytest.mark.parametrize(
    ("tenant", "browser"),
    [("tenant-b", True), (None, True), ("tenant-a", False), ("tenant-a", None)],
    ids=["other-tenant", "unknown-tenant", "other-browser", "no-browser-cookie"],
)
async def test_a_mismatch_refuses_and_spends_the_code(
    store: EphemeralStore, tenant: str | None, browser: bool | None
) -> None:
    codes = SsoCodes(store)
    issued = await codes.issue("tenant-a", PAYLOAD)
    binding = {True: issued.browser_binding, False: "another-browser", None: None}[browser]

    with pytest.raises(SsoCodeRefused) as refused:
        await codes.redeem(issued.code, tenant, binding)

    assert refused.value.status == 400
    assert refused.value.type_slug == "sso-code-invalid"
    # A failed attempt spends the code: it cannot be retried with other guesses.
    with pytest.raises(SsoCodeRefused):
        await codes.redeem(issued.code, "tenant-a", issued.browser_binding)


@pytest.mark.parametrize(
    "code", ["", "x", "A" * 43, "A" * 42 + "!", "A" * 44, "../" * 15, "ä" * 43]
)
async def test_unknown_and_malformed_codes_are_refused(store: EphemeralStore, code: str) -> None:
    codes = SsoCodes(store)
    await codes.issue("tenant-a", PAYLOAD)

    with pytest.raises(SsoCodeRefused):
        await codes.redeem(code, "tenant-a", "binding")


async def test_every_refusal_reads_the_same(store: EphemeralStore) -> None:
    codes = SsoCodes(store)
    first = await codes.issue("tenant-a", PAYLOAD)
    second = await codes.issue("tenant-a", PAYLOAD)
    details = set()
    for code, tenant, binding in [
        ("B" * 43, "tenant-a", "x"),
        (first.code, "tenant-b", first.browser_binding),
        (second.code, "tenant-a", "x"),
        (first.code, "tenant-a", first.browser_binding),
    ]:
        with pytest.raises(SsoCodeRefused) as refused:
            await codes.redeem(code, tenant, binding)
        details.add(refused.value.detail)
    assert len(details) == 1


async def test_a_tampered_record_is_refused(store: EphemeralStore) -> None:
    codes = SsoCodes(store)
    issued = await codes.issue("tenant-a", PAYLOAD)
    record = json.loads(await store.get(code_key(issued.code)) or b"{}")
    # Someone with write access to the store moves the sealed tokens to another tenant.
    record["tenant"] = "tenant-b"
    await store.set(code_key(issued.code), json.dumps(record).encode(), 30)

    with pytest.raises(SsoCodeRefused):
        await codes.redeem(issued.code, "tenant-b", issued.browser_binding)


async def test_garbage_in_the_store_is_a_refusal(store: EphemeralStore) -> None:
    codes = SsoCodes(store)
    issued = await codes.issue("tenant-a", PAYLOAD)
    await store.set(code_key(issued.code), b"\xff not json", 30)

    with pytest.raises(SsoCodeRefused):
        await codes.redeem(issued.code, "tenant-a", issued.browser_binding)


async def test_the_store_expires_codes_after_their_ttl() -> None:
    clock = Clock()
    codes = SsoCodes(MemoryStore(clock=clock))
    kept = await codes.issue("t", PAYLOAD)
    late = await codes.issue("t", PAYLOAD)

    clock.now += CODE_TTL_S - 1
    assert await codes.redeem(kept.code, "t", kept.browser_binding) == PAYLOAD
    clock.now += 2
    with pytest.raises(SsoCodeRefused):
        await codes.redeem(late.code, "t", late.browser_binding)


async def test_redis_expires_codes_on_its_own() -> None:
    require_service("Redis on 127.0.0.1:6379", port_open("127.0.0.1", 6379))
    redis = Redis.from_url(REDIS_URL)
    try:
        codes = SsoCodes(RedisStore(redis, prefix=f"test-{uuid.uuid4().hex[:8]}:"), ttl_s=0.2)
        issued = await codes.issue("t", PAYLOAD)
        await asyncio.sleep(0.4)
        with pytest.raises(SsoCodeRefused):
            await codes.redeem(issued.code, "t", issued.browser_binding)
    finally:
        await redis.aclose()


async def test_the_recorded_expiry_is_checked_too(
    store: EphemeralStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store whose TTL failed (or a clock step) still cannot stretch a code's minute."""
    codes = SsoCodes(store)
    issued = await codes.issue("t", PAYLOAD)
    now = sso_codes._now()
    monkeypatch.setattr(sso_codes, "_now", lambda: now + CODE_TTL_S + 1)

    with pytest.raises(SsoCodeRefused):
        await codes.redeem(issued.code, "t", issued.browser_binding)


@pytest.mark.parametrize("ttl", [0, -1, CODE_TTL_S + 1, 3600])
def test_a_code_cannot_be_made_to_live_longer_than_a_minute(ttl: float) -> None:
    with pytest.raises(ValueError):
        SsoCodes(MemoryStore(), ttl_s=ttl)
