"""Writes that must not be lost to a database outage, retried in the background until it ends.

A turn that fails because the database went away cannot record its failure in that database
at that moment either. The client gets its answer (503) at once; the record is written as soon
as the database answers again, within ``RETRY_DELAYS_S`` (about two minutes), by the same
process. A process that stops before then loses the retry: the log says so.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from obsigen.errors import DatabaseUnavailable

log = logging.getLogger(__name__)

# Often enough that a write lands within seconds of the database's return, for two minutes.
RETRY_DELAYS_S: tuple[float, ...] = (0.5, 1, 2, *(5,) * 23)

# Strong references: the event loop keeps only weak ones to running tasks.
_pending: set[asyncio.Task[None]] = set()


def retry_when_back(
    write: Callable[[], Awaitable[None]],
    what: str,
    delays_s: tuple[float, ...] = RETRY_DELAYS_S,
) -> asyncio.Task[None]:
    """Run ``write`` again after each delay while it raises DatabaseUnavailable."""
    task = asyncio.get_running_loop().create_task(_retry(write, what, delays_s))
    _pending.add(task)
    task.add_done_callback(_pending.discard)
    return task


def pending() -> int:
    """Writes still waiting for the database (for tests and shutdown logs)."""
    return len(_pending)


async def _retry(
    write: Callable[[], Awaitable[None]], what: str, delays: tuple[float, ...]
) -> None:
    try:
        for delay in delays:
            await asyncio.sleep(delay)
            try:
                await write()
            except DatabaseUnavailable:
                continue
            log.info("%s: written after the database came back", what)
            return
        log.error("%s: not written, the database stayed unavailable", what)
    except asyncio.CancelledError:
        # A shutdown, not a bug: no traceback.
        log.error("%s: not written, stopped while the database was unavailable", what)  # noqa: TRY400
        raise
    except Exception:
        log.exception("%s: not written", what)
