"""cancel_and_wait: a task that loses a cancellation is still stopped."""

from __future__ import annotations

import asyncio

import pytest

from obsigen.cancellation import cancel_and_wait


async def test_a_task_that_swallows_the_first_cancel_is_stopped() -> None:
    # What Python 3.11's wait_for does when the cancel meets a completed read (gh-86296).
    swallowed = 0

    async def loop_forever() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1

    task = asyncio.create_task(loop_forever())
    await asyncio.sleep(0)
    # A single cancel and await would wait for an hour here.
    await asyncio.wait_for(cancel_and_wait(task, recancel_after_s=0.01), timeout=5)
    assert task.cancelled()
    assert swallowed == 1


async def test_a_cooperative_task_is_cancelled_once() -> None:
    cancels = 0

    async def worker() -> None:
        nonlocal cancels
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancels += 1
            raise

    task = asyncio.create_task(worker())
    await asyncio.sleep(0)
    await cancel_and_wait(task)
    assert task.cancelled()
    assert cancels == 1


async def test_the_failure_of_a_finished_task_is_raised() -> None:
    async def fails() -> None:
        raise ValueError("broken")

    task = asyncio.create_task(fails())
    await asyncio.wait({task})
    with pytest.raises(ValueError, match="broken"):
        await cancel_and_wait(task)
