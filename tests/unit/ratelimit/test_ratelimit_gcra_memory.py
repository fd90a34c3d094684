"""GCRA semantics on the in-memory limiter, with a clock the test moves."""

from __future__ import annotations

import pytest

from obsigen.errors import TooManyAttempts
from obsigen.ratelimit.errors import RateLimited
from obsigen.ratelimit.gcra import Limit, MemoryRateLimiter
from obsigen.ratelimit.rates import parse_rate


class Clock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


async def test_burst_of_limit_then_one_per_interval() -> None:
    clock = Clock()
    limiter = MemoryRateLimiter(clock)
    limit = Limit("k", parse_rate("5/10seconds"))  # one every 2 s
    decisions = [await limiter.decide([limit]) for _ in range(6)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False]
    assert [d.remaining for d in decisions[:5]] == [4, 3, 2, 1, 0]
    refused = decisions[5]
    assert refused.retry_after_s == pytest.approx(2.0)
    assert refused.reset_after_s == pytest.approx(10.0)
    clock.now += 1.999
    assert not (await limiter.decide([limit])).allowed
    clock.now += 0.001
    again = await limiter.decide([limit])
    assert again.allowed
    assert again.remaining == 0


async def test_first_decision_reports_the_policy() -> None:
    limiter = MemoryRateLimiter(Clock())
    decision = await limiter.decide([Limit("k", parse_rate("120/minute"))])
    assert decision.allowed
    assert decision.limit == 120
    assert decision.remaining == 119
    assert decision.period_s == 60
    assert decision.reset_after_s == pytest.approx(0.5)
    assert decision.retry_after_s == 0


async def test_full_allowance_returns_after_a_quiet_period() -> None:
    clock = Clock()
    limiter = MemoryRateLimiter(clock)
    limit = Limit("k", parse_rate("3/minute"))
    for _ in range(3):
        assert (await limiter.decide([limit])).allowed
    clock.now += 60
    assert [(await limiter.decide([limit])).allowed for _ in range(4)] == [True] * 3 + [False]


async def test_scopes_are_all_or_nothing_and_report_the_binding_one() -> None:
    clock = Clock()
    limiter = MemoryRateLimiter(clock)
    wide = Limit("tenant", parse_rate("100/minute"))
    narrow = Limit("principal", parse_rate("2/minute"))
    first = await limiter.decide([wide, narrow])
    assert (first.key, first.limit, first.remaining) == ("principal", 2, 1)
    assert (await limiter.decide([wide, narrow])).allowed
    refused = await limiter.decide([wide, narrow])
    assert not refused.allowed
    assert refused.key == "principal"
    assert refused.retry_after_s == pytest.approx(30.0)
    # The refusal consumed nothing from the tenant: it still has 98 of 100.
    other = await limiter.decide([wide, Limit("other-principal", parse_rate("2/minute"))])
    assert other.allowed
    tenant_only = await limiter.decide([wide])
    assert tenant_only.remaining == 96


async def test_cost_counts_several_units_and_refusal_converts_to_a_429() -> None:
    limiter = MemoryRateLimiter(Clock())
    limit = Limit("k", parse_rate("10/second"))
    assert (await limiter.decide([limit], cost=7)).remaining == 3
    refused = await limiter.decide([limit], cost=4)
    assert not refused.allowed
    assert refused.remaining == 3
    error = refused.refusal()
    assert isinstance(error, RateLimited)
    assert isinstance(error, TooManyAttempts)
    assert error.status == 429
    assert error.type_slug == "rate-limited"
    headers = error.headers()
    assert headers["Retry-After"] == "1"  # 0.1 s rounds up: never advise a retry too early
    assert headers["RateLimit-Limit"] == "10"
    assert headers["RateLimit-Remaining"] == "3"
    assert headers["RateLimit-Policy"] == "10;w=1"
    with pytest.raises(ValueError):
        await limiter.decide([limit], cost=0)
    with pytest.raises(ValueError):
        await limiter.decide([])


async def test_reset_forgets_a_key() -> None:
    limiter = MemoryRateLimiter(Clock())
    limit = Limit("k", parse_rate("1/hour"))
    assert (await limiter.decide([limit])).allowed
    assert not (await limiter.decide([limit])).allowed
    await limiter.reset("k")
    assert (await limiter.decide([limit])).allowed


async def test_idle_keys_are_swept() -> None:
    clock = Clock()
    limiter = MemoryRateLimiter(clock)
    rate = parse_rate("1/second")
    for i in range(5000):
        await limiter.decide([Limit(f"k{i}", rate)])
        clock.now += 0.01
    # Keys whose allowance is full again carry no information and are dropped now and then.
    assert len(limiter._tat) < 5000
