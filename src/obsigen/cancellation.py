"""Stopping background tasks even when a cancellation is lost on the way."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

# How long to wait for a cancelled task before cancelling it again.
RECANCEL_AFTER_S = 0.5


async def cancel_and_wait(
    task: asyncio.Task[Any], recancel_after_s: float = RECANCEL_AFTER_S
) -> None:
    """Cancel ``task`` and return once it has ended; its own failure, if any, is raised.

    A single ``cancel()`` followed by ``await task`` can wait forever on Python 3.11: its
    ``asyncio.wait_for`` swallows a cancellation that arrives just as the awaited operation
    completes (CPython gh-86296, fixed in 3.12), and asyncmy wraps every read in ``wait_for``
    once ``read_timeout`` is set (db/engine.py). A loop cancelled while it talked to MariaDB
    then went back to waiting for work, and a server's shutdown hung with it. So the task is
    cancelled again until it ends.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=recancel_after_s)
    with contextlib.suppress(asyncio.CancelledError):
        await task
