"""Token budgets in memory: reservation, settlement, release, windows and concurrency."""

from __future__ import annotations

import asyncio

import pytest

from obsigen.ratelimit.budget import MemoryTokenBudget
from obsigen.ratelimit.errors import TokenBudgetExceeded
from obsigen.ratelimit.rates import parse_rate

DAY = 86_400.0


class Clock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def budget(
    tenant: str = "1000/day", user: str = "400/day", start: float = 10 * DAY
) -> tuple[MemoryTokenBudget, Clock]:
    clock = Clock(start)
    return MemoryTokenBudget(parse_rate(tenant), parse_rate(user), clock), clock


async def test_reservation_takes_from_both_and_settle_refunds() -> None:
    tokens, _ = budget()
    held = await tokens.reserve("t1", "u1", 300)
    assert held.remaining == 100  # the user's 400 is the binding budget
    await tokens.settle(held, 50)
    again = await tokens.reserve("t1", "u1", 350)
    assert again.remaining == 0
    with pytest.raises(TokenBudgetExceeded):
        await tokens.reserve("t1", "u1", 1)


async def test_refusal_names_the_scope_and_when_it_resets() -> None:
    tokens, clock = budget()
    clock.now = 10 * DAY + 3600  # 01:00 UTC: the day's window ends in 23 h
    await tokens.reserve("t1", "u1", 400)
    with pytest.raises(TokenBudgetExceeded) as refused:
        await tokens.reserve("t1", "u1", 10)
    error = refused.value
    assert error.status == 429
    assert error.type_slug == "token-budget-exceeded"
    assert "user token budget" in error.detail
    assert error.retry_after_s == 23 * 3600
    assert error.limit == 400
    assert error.remaining == 0


async def test_tenant_budget_binds_across_users_and_refusal_takes_nothing() -> None:
    tokens, _ = budget(tenant="1000/day", user="400/day")
    for user in ("a", "b"):
        await tokens.reserve("t1", user, 400)
    with pytest.raises(TokenBudgetExceeded, match="tenant token budget"):
        await tokens.reserve("t1", "c", 300)  # the tenant has 200 left
    # The refused 300 was not taken from c's own budget: 200 still fits for c.
    await tokens.reserve("t1", "c", 200)
    # Another tenant is untouched.
    await tokens.reserve("t2", "a", 400)


async def test_release_returns_everything_once() -> None:
    tokens, _ = budget(user="100/day")
    held = await tokens.reserve("t1", "u1", 100)
    await tokens.release(held)
    await tokens.release(held)  # a second release must not credit twice
    await tokens.settle(held, 0)
    second = await tokens.reserve("t1", "u1", 100)
    assert second.remaining == 0
    with pytest.raises(TokenBudgetExceeded):
        await tokens.reserve("t1", "u1", 1)


async def test_overrun_is_charged_and_a_new_window_starts_fresh() -> None:
    tokens, clock = budget(user="100/day")
    held = await tokens.reserve("t1", "u1", 50)
    await tokens.settle(held, 120)  # the estimate was short: the real usage counts
    with pytest.raises(TokenBudgetExceeded):
        await tokens.reserve("t1", "u1", 1)
    clock.now += DAY
    late = await tokens.reserve("t1", "u1", 100)
    assert late.remaining == 0


async def test_settling_after_the_window_ended_leaves_the_new_window_alone() -> None:
    tokens, clock = budget(user="100/day")
    held = await tokens.reserve("t1", "u1", 100)
    clock.now += DAY
    fresh = await tokens.reserve("t1", "u1", 60)
    await tokens.settle(held, 0)  # a refund for yesterday must not credit today
    assert fresh.remaining == 40
    with pytest.raises(TokenBudgetExceeded):
        await tokens.reserve("t1", "u1", 41)


async def test_concurrent_reservations_never_exceed_the_budget() -> None:
    tokens, _ = budget(tenant="10000/day", user="10000/day")

    async def attempt() -> int:
        await asyncio.sleep(0)
        try:
            await tokens.reserve("t1", "u1", 70)
        except TokenBudgetExceeded:
            return 0
        return 70

    granted = await asyncio.gather(*(attempt() for _ in range(500)))
    assert sum(granted) == 70 * (10000 // 70)


async def test_no_budgets_means_no_bookkeeping() -> None:
    tokens = MemoryTokenBudget(None, None)
    held = await tokens.reserve("t1", "u1", 10**9)
    assert held.remaining is None
    await tokens.settle(held, 5)
    with pytest.raises(ValueError):
        await tokens.reserve("t1", "u1", -1)
