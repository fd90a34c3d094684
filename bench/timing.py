"""One way to time an async operation for every micro-benchmark: warm up, then median and p99."""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any


async def time_async(
    op: Callable[[], Awaitable[Any]], rounds: int, warmup: int = 50
) -> dict[str, float]:
    # Warm-up fills the caches a long-running server has warm: key handles, public keys,
    # prepared statements, pooled connections.
    for _ in range(min(warmup, rounds)):
        await op()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        await op()
        samples.append((time.perf_counter_ns() - start) / 1000)
    samples.sort()
    return {
        "median_us": round(statistics.median(samples), 1),
        "p99_us": round(samples[min(len(samples) - 1, int(len(samples) * 0.99))], 1),
        "n": rounds,
    }
