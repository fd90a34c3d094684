"""The warm pool: sandboxes made ahead, each used once, bounded concurrency, back-pressure."""

from __future__ import annotations

import asyncio

import pytest
from tests.fakes.sandbox import FakeBackend

from obsigen.sandbox.interfaces import (
    Limits,
    RunRequest,
    SandboxBusy,
    SandboxInputError,
    SandboxUnavailable,
)
from obsigen.sandbox.pool import SandboxPool

LIMITS = Limits(wall_time_s=4)


def pool(backend: FakeBackend, **kwargs: float) -> SandboxPool:
    options = {"size": 2, "concurrency": 2, "queue_timeout_s": 0.05} | kwargs
    return SandboxPool(
        backend,
        LIMITS,
        size=int(options["size"]),
        concurrency=int(options["concurrency"]),
        queue_timeout_s=options["queue_timeout_s"],
    )


async def wait_ready(runner: SandboxPool, count: int) -> None:
    async with asyncio.timeout(2):
        while runner.ready < count:  # noqa: ASYNC110 - the pool has no event to wait on
            await asyncio.sleep(0.001)


async def test_warm_fills_the_pool_and_runs_take_ready_sandboxes() -> None:
    backend = FakeBackend()
    runner = pool(backend)
    runner.warm()
    await wait_ready(runner, 2)
    assert len(backend.made) == 2

    result = await runner.run(RunRequest("print(1)"))

    assert result.stdout == "ran in sandbox 0\n"
    await wait_ready(runner, 2)  # refilled after the run
    await runner.drain()
    assert backend.made[0].discarded
    assert len(backend.made) == 3
    await runner.aclose()


async def test_every_sandbox_is_used_once_and_torn_down() -> None:
    backend = FakeBackend()
    runner = pool(backend, concurrency=4)
    runner.warm()
    results = await asyncio.gather(*(runner.run(RunRequest("x")) for _ in range(10)))
    await runner.aclose()

    assert len({r.stdout for r in results}) == 10
    assert all(s.runs <= 1 for s in backend.made)
    assert all(s.discarded for s in backend.made)
    assert backend.closed


async def test_a_full_pool_answers_busy_with_a_retry_hint() -> None:
    backend = FakeBackend(run_delay_s=0.3)
    runner = pool(backend, concurrency=1, size=0)
    first = asyncio.ensure_future(runner.run(RunRequest("slow")))
    await asyncio.sleep(0.05)

    with pytest.raises(SandboxBusy) as busy:
        await runner.run(RunRequest("fast"))

    assert busy.value.status == 503
    assert busy.value.retry_after_s >= 1
    assert (await first).exit_code == 0
    # The slot is free again: the next run goes through.
    assert (await runner.run(RunRequest("again"))).exit_code == 0
    await runner.aclose()


async def test_other_limits_get_a_sandbox_made_for_them() -> None:
    backend = FakeBackend()
    runner = pool(backend)
    runner.warm()
    await wait_ready(runner, 2)
    tight = Limits(wall_time_s=1, memory_mb=128)

    await runner.run(RunRequest("x", limits=tight))

    assert [s.limits for s in backend.made if s.runs] == [tight]
    await runner.aclose()


async def test_failed_prepares_do_not_stop_the_pool() -> None:
    backend = FakeBackend(fail_prepares=1)
    runner = pool(backend, size=1)
    runner.warm()
    await wait_ready(runner, 1)  # after one back-off
    assert (await runner.run(RunRequest("x"))).exit_code == 0
    await runner.aclose()


async def test_bad_requests_are_refused_before_a_sandbox_is_taken() -> None:
    backend = FakeBackend()
    runner = pool(backend, size=0)
    with pytest.raises(SandboxInputError):
        await runner.run(RunRequest("x", files={"../etc/passwd": b""}))
    with pytest.raises(SandboxInputError):
        await runner.run(RunRequest("x" * (300 * 1024)))
    with pytest.raises(SandboxInputError):
        await runner.run(RunRequest("print(1)\x00"))
    assert backend.made == []
    await runner.aclose()


async def test_a_closed_pool_discards_its_sandboxes_and_refuses_runs() -> None:
    backend = FakeBackend()
    runner = pool(backend)
    runner.warm()
    await wait_ready(runner, 2)

    await runner.aclose()

    assert all(s.discarded for s in backend.made)
    with pytest.raises(SandboxUnavailable):
        await runner.run(RunRequest("x"))


async def test_a_cancelled_run_still_tears_its_sandbox_down() -> None:
    backend = FakeBackend(run_delay_s=5)
    runner = pool(backend, size=0)
    task = asyncio.ensure_future(runner.run(RunRequest("x")))
    await asyncio.sleep(0.05)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await runner.drain()

    assert backend.made[0].discarded
    await runner.aclose()
