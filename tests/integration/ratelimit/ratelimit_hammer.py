"""One of several processes hammering one shared limit (run by test_ratelimit_redis.py).

``python ratelimit_hammer.py gcra|budget PREFIX ATTEMPTS PROCESSES``: waits until all
PROCESSES have connected (a barrier in Redis), makes ATTEMPTS decisions with 16 in flight
over its own connections, and prints how many were allowed as JSON.
"""

from __future__ import annotations

import asyncio
import json
import sys

from redis.asyncio import Redis

from obsigen.ratelimit.budget import RedisTokenBudget
from obsigen.ratelimit.errors import TokenBudgetExceeded
from obsigen.ratelimit.gcra import Limit, RedisRateLimiter
from obsigen.ratelimit.rates import parse_rate

REDIS_URL = "redis://127.0.0.1:6379/0"
# 50 per hour: GCRA lets one more through every 72 s, far longer than a run, so exactly 50.
GCRA_RATE = "50/hour"
# A window of a century: the test never straddles a boundary. 1000 // 7 = 142 reservations.
BUDGET_RATE = "1000/36500days"
BUDGET_TOKENS = 7
IN_FLIGHT = 16


async def main(mode: str, prefix: str, attempts: int, processes: int) -> int:
    redis = Redis.from_url(REDIS_URL)
    try:
        limiter = RedisRateLimiter(redis, prefix=prefix)
        budget = RedisTokenBudget(
            redis, parse_rate("100000/36500days"), parse_rate(BUDGET_RATE), prefix=prefix
        )
        # Load the scripts and open connections before the start, so all start at once.
        await limiter.decide([Limit("warmup", parse_rate(GCRA_RATE))])
        await budget.reserve("warmup", "warmup", 1)
        # A barrier across processes: the last to arrive lets everyone go at once.
        if await redis.incr(prefix + "ready") == processes:
            await redis.rpush(prefix + "go", *(["go"] * processes))
        if await redis.blpop([prefix + "go"], timeout=10) is None:
            raise TimeoutError("the other processes did not start")
        gate = asyncio.Semaphore(IN_FLIGHT)
        shared = Limit("shared", parse_rate(GCRA_RATE))

        async def attempt() -> bool:
            async with gate:
                if mode == "gcra":
                    return (await limiter.decide([shared])).allowed
                try:
                    await budget.reserve("tenant", "user", BUDGET_TOKENS)
                except TokenBudgetExceeded:
                    return False
                return True

        results = await asyncio.gather(*(attempt() for _ in range(attempts)))
        return sum(results)
    finally:
        await redis.aclose()


if __name__ == "__main__":
    allowed = asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
    print(json.dumps({"allowed": allowed}))
