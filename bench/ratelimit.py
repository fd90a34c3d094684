"""Rate-limit decisions per second: ``.venv/bin/python -m bench.ratelimit [--quick]``.

Measures one decision over the three scopes of an authenticated request (tenant, principal,
endpoint) as the web edge makes it: in memory, and in Redis (one EVALSHA) one at a time and
with 32 in flight; a token reservation plus its settlement in Redis; then an exactness check:
4 processes, each with its own connections, hammer one 1000/hour limit with 1000 attempts
each, and exactly 1000 must be allowed. Needs Redis on 127.0.0.1:6379 for all but the
memory numbers. Writes ``bench/results/ratelimit.json`` (``bench.report`` layout).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
import uuid
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis

from bench.report import machine_info, write_suite
from bench.timing import time_async
from obsigen.ratelimit.budget import RedisTokenBudget
from obsigen.ratelimit.gcra import Limit, MemoryRateLimiter, RateLimiter, RedisRateLimiter
from obsigen.ratelimit.rates import parse_rate

REDIS_URL = "redis://127.0.0.1:6379/0"
# High enough that every measured decision is allowed (a refusal is no cheaper anyway).
HIGH = parse_rate("1000000/second")
EXACT_LIMIT = 1000
EXACT_PROCESSES = 4


def _scopes(i: int = 0) -> list[Limit]:
    return [
        Limit("{t:bench}:tenant", HIGH),
        Limit(f"{{t:bench}}:p:user:{i % 50}", HIGH),
        Limit(f"{{t:bench}}:e:POST:/v1/chat/completions:p:user:{i % 50}", HIGH),
    ]


async def _throughput(limiter: RateLimiter, n: int, in_flight: int) -> float:
    gate = asyncio.Semaphore(in_flight)
    scopes = [_scopes(i) for i in range(50)]

    async def one(i: int) -> None:
        async with gate:
            await limiter.decide(scopes[i % 50])

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return n / (time.perf_counter() - start)


async def _clean(redis: Redis, prefix: str) -> None:
    keys = [key async for key in redis.scan_iter(match=prefix + "*", count=1000)]
    if keys:
        await redis.delete(*keys)


async def _measure(rounds: int) -> dict[str, Any]:
    memory = MemoryRateLimiter()
    scopes = _scopes()
    results: dict[str, Any] = {
        "memory_decide_3_scopes": await time_async(lambda: memory.decide(scopes), rounds),
        "memory_decisions_per_s": round(await _throughput(memory, rounds * 5, 1)),
    }
    pool = BlockingConnectionPool.from_url(REDIS_URL, max_connections=64, timeout=5)
    redis = Redis.from_pool(pool)
    prefix = f"bench:rl:{uuid.uuid4().hex[:8]}:"
    try:
        limiter = RedisRateLimiter(redis, prefix=prefix)
        budget = RedisTokenBudget(
            redis, parse_rate("1000000000/day"), parse_rate("1000000000/day"), prefix=prefix
        )

        async def reserve_settle() -> None:
            held = await budget.reserve("bench", "user:1", 600)
            await budget.settle(held, 150)

        results["redis_decide_3_scopes"] = await time_async(lambda: limiter.decide(scopes), rounds)
        results["redis_decisions_per_s_1_in_flight"] = round(await _throughput(limiter, rounds, 1))
        results["redis_decisions_per_s_32_in_flight"] = round(
            await _throughput(limiter, rounds * 2, 32)
        )
        results["redis_budget_reserve_and_settle"] = await time_async(reserve_settle, rounds)
    finally:
        await _clean(redis, prefix)
        await redis.aclose()
    return results


async def _worker(prefix: str, attempts: int, processes: int) -> int:
    redis = Redis.from_pool(BlockingConnectionPool.from_url(REDIS_URL, max_connections=16))
    try:
        limiter = RedisRateLimiter(redis, prefix=prefix)
        shared = [Limit("shared", parse_rate(f"{EXACT_LIMIT}/hour"))]
        await limiter.decide([Limit("warmup", HIGH)])
        if await redis.incr(prefix + "ready") == processes:
            await redis.rpush(prefix + "go", *(["go"] * processes))
        if await redis.blpop([prefix + "go"], timeout=30) is None:
            raise TimeoutError("the other processes did not start")
        gate = asyncio.Semaphore(16)

        async def one() -> bool:
            async with gate:
                return (await limiter.decide(shared)).allowed

        return sum(await asyncio.gather(*(one() for _ in range(attempts))))
    finally:
        await redis.aclose()


def _exactness(attempts: int) -> dict[str, Any]:
    prefix = f"bench:rl:{uuid.uuid4().hex[:8]}:"
    command = [sys.executable, "-m", "bench.ratelimit", "--worker", prefix, str(attempts)]
    start = time.perf_counter()
    procs = [
        subprocess.Popen([*command, str(EXACT_PROCESSES)], stdout=subprocess.PIPE, text=True)
        for _ in range(EXACT_PROCESSES)
    ]
    allowed = 0
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        if proc.returncode != 0:
            raise RuntimeError("an exactness worker failed")
        allowed += json.loads(out)["allowed"]
    elapsed = time.perf_counter() - start

    async def clean() -> None:
        redis = Redis.from_url(REDIS_URL)
        try:
            await _clean(redis, prefix)
        finally:
            await redis.aclose()

    asyncio.run(clean())
    return {
        "processes": EXACT_PROCESSES,
        "attempts": EXACT_PROCESSES * attempts,
        "limit": EXACT_LIMIT,
        "allowed": allowed,
        "exact": allowed == EXACT_LIMIT,
        "seconds": round(elapsed, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="500 rounds instead of 5000")
    parser.add_argument("--worker", nargs=3, metavar=("PREFIX", "ATTEMPTS", "PROCESSES"))
    args = parser.parse_args()
    if args.worker:
        prefix, attempts, processes = args.worker
        print(json.dumps({"allowed": asyncio.run(_worker(prefix, int(attempts), int(processes)))}))
        return 0
    rounds = 500 if args.quick else 5000
    machine = machine_info()
    results = asyncio.run(_measure(rounds))
    results["exactness"] = _exactness(attempts=1000 if not args.quick else 500)
    path = write_suite("ratelimit", machine, {"rounds": rounds, "results": results})
    print("| measurement | value |")
    print("|---|---:|")
    for name, value in results.items():
        if isinstance(value, dict) and "median_us" in value:
            print(f"| {name} | median {value['median_us']:.0f} µs, p99 {value['p99_us']:.0f} µs |")
        elif name != "exactness":
            print(f"| {name} | {value} |")
    exact = results["exactness"]
    verdict = "exact" if exact["exact"] else "NOT EXACT"
    print(
        f"exactness: {exact['processes']} processes, {exact['attempts']} attempts against "
        f"{exact['limit']}/hour: {exact['allowed']} allowed ({verdict}) "
        f"in {exact['seconds']} s; written to {path}"
    )
    return 0 if exact["exact"] else 1


if __name__ == "__main__":
    sys.exit(main())
