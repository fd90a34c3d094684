"""The Redis limiter and token budget: same answers as in memory, exact across processes,
Redis's clock rather than ours, and the store-down policy."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis

from obsigen.ephemeral.interfaces import StoreUnavailable
from obsigen.ratelimit.budget import RedisTokenBudget
from obsigen.ratelimit.errors import TokenBudgetExceeded
from obsigen.ratelimit.gcra import Limit, RedisRateLimiter
from obsigen.ratelimit.rates import parse_rate

HAMMER = Path(__file__).with_name("ratelimit_hammer.py")
CENTURY = "36500days"  # a budget window no test run straddles


async def test_burst_then_refusal_with_retry_after(redis: Redis, prefix: str) -> None:
    limiter = RedisRateLimiter(redis, prefix=prefix)
    limit = Limit("k", parse_rate("5/10seconds"))
    decisions = [await limiter.decide([limit]) for _ in range(6)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False]
    assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0, 0]
    refused = decisions[5]
    assert 1.8 < refused.retry_after_s <= 2.0
    assert 9.8 < refused.reset_after_s <= 10.0
    assert (refused.limit, refused.period_s) == (5, 10)


async def test_decision_uses_the_redis_clock(redis: Redis, prefix: str) -> None:
    limiter = RedisRateLimiter(redis, prefix=prefix)
    await limiter.decide([Limit("k", parse_rate("1/minute"))])
    seconds, micros = await redis.time()
    stored = int(await redis.get(prefix + "k"))
    # The stored arrival time is Redis's now plus one interval, to the microsecond scale.
    assert abs(stored - (seconds * 1_000_000 + micros + 60_000_000)) < 1_000_000
    ttl_ms = await redis.pttl(prefix + "k")
    assert 59_000 < ttl_ms <= 60_001


async def test_scopes_are_independent_and_all_or_nothing(redis: Redis, prefix: str) -> None:
    limiter = RedisRateLimiter(redis, prefix=prefix)
    tenant_a = Limit("{t:a}:tenant", parse_rate("3/hour"))
    tenant_b = Limit("{t:b}:tenant", parse_rate("3/hour"))
    alice = Limit("{t:a}:p:alice", parse_rate("2/hour"))
    bob = Limit("{t:a}:p:bob", parse_rate("2/hour"))
    assert [(await limiter.decide([tenant_a, alice])).allowed for _ in range(3)] == [
        True,
        True,
        False,
    ]
    refused = await limiter.decide([tenant_a, alice])
    assert refused.key == "{t:a}:p:alice"
    # Alice's refusals took nothing from her tenant: Bob gets its last request.
    assert (await limiter.decide([tenant_a, bob])).allowed
    tenant_refusal = await limiter.decide([tenant_a, bob])
    assert not tenant_refusal.allowed
    assert tenant_refusal.key == "{t:a}:tenant"
    # Tenant A exhausted; tenant B untouched.
    assert (await limiter.decide([tenant_b])).remaining == 2


def _hammer(mode: str, prefix: str, attempts: int, processes: int) -> int:
    commands = [
        [sys.executable, str(HAMMER), mode, prefix, str(attempts), str(processes)]
        for _ in range(processes)
    ]
    running = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for cmd in commands
    ]
    total = 0
    try:
        for proc in running:
            out, err = proc.communicate(timeout=20)
            assert proc.returncode == 0, err
            total += json.loads(out)["allowed"]
    finally:
        for proc in running:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return total


def test_limit_is_exact_across_processes(redis: Redis, prefix: str) -> None:
    start = time.monotonic()
    # 3 processes x 200 attempts at once against 50/hour: exactly 50, never 49 or 51.
    assert _hammer("gcra", prefix, 200, 3) == 50
    assert time.monotonic() - start < 10


def test_token_budget_is_exact_across_processes(redis: Redis, prefix: str) -> None:
    # 3 processes x 100 reservations of 7 tokens against 1000: exactly 1000 // 7.
    assert _hammer("budget", prefix, 100, 3) == 1000 // 7


async def test_concurrent_reservations_never_overspend(redis: Redis, prefix: str) -> None:
    budget = RedisTokenBudget(
        redis, parse_rate(f"5000/{CENTURY}"), parse_rate(f"3000/{CENTURY}"), prefix=prefix
    )

    async def attempt(user: str) -> int:
        try:
            await budget.reserve("t", user, 90)
        except TokenBudgetExceeded:
            return 0
        return 90

    granted = await asyncio.gather(*(attempt("u1" if i % 2 else "u2") for i in range(200)))
    # Each user may hold 33 x 90 = 2970; together they are held to the tenant's 5000.
    assert sum(granted) == 55 * 90
    assert sum(granted) <= 5000


async def test_settle_refunds_and_release_returns(redis: Redis, prefix: str) -> None:
    budget = RedisTokenBudget(redis, None, parse_rate(f"1000/{CENTURY}"), prefix=prefix)
    held = await budget.reserve("t", "u", 800)
    assert held.remaining == 200
    await budget.settle(held, 300)
    second = await budget.reserve("t", "u", 700)
    assert second.remaining == 0
    await budget.release(second)
    await budget.release(second)  # once only
    third = await budget.reserve("t", "u", 700)
    assert third.remaining == 0
    with pytest.raises(TokenBudgetExceeded) as refused:
        await budget.reserve("t", "u", 1)
    assert refused.value.type_slug == "token-budget-exceeded"
    assert "user token budget" in refused.value.detail


async def test_store_down_fails_closed(dead_redis: Redis) -> None:
    limiter = RedisRateLimiter(dead_redis, on_store_down="closed")
    with pytest.raises(StoreUnavailable) as down:
        await limiter.decide([Limit("k", parse_rate("1/second"))])
    assert down.value.status == 503
    budget = RedisTokenBudget(dead_redis, parse_rate("10/day"), None)
    with pytest.raises(StoreUnavailable):
        await budget.reserve("t", "u", 1)


async def test_store_down_open_allows_and_warns(
    dead_redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    limiter = RedisRateLimiter(dead_redis, on_store_down="open")
    limit = Limit("k", parse_rate("1/hour"))
    with caplog.at_level(logging.WARNING, logger="obsigen.ratelimit"):
        decisions = [await limiter.decide([limit]) for _ in range(3)]
    assert all(d.allowed and d.degraded for d in decisions)
    warnings = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(warnings) == 1  # throttled: an outage must not flood the log
    # A per-call policy wins over the limiter's default (reads vs writes).
    with pytest.raises(StoreUnavailable):
        await limiter.decide([limit], on_store_down="closed")
    budget = RedisTokenBudget(dead_redis, parse_rate("10/day"), None, on_store_down="open")
    held = await budget.reserve("t", "u", 1000)
    assert held.degraded
    await budget.settle(held, 5)
