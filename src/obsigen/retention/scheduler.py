"""The server's own retention run: every ``retention.interval_hours``, one replica at a time.

Started from the app's lifespan and stopped on shutdown. A stop lets the purge finish the
batch in hand (and audit it) for a few seconds before cancelling. The first run comes
shortly after start-up rather than a whole interval later: replicas that restart more often
than the interval would otherwise never purge, and a run with nothing to do is cheap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from obsigen.audit.recorder import AuditRecorder
from obsigen.cancellation import cancel_and_wait
from obsigen.config import RetentionSettings
from obsigen.files.stores import ObjectStore
from obsigen.retention.lock import retention_lock
from obsigen.retention.purge import Purger, TenantPurge

if TYPE_CHECKING:
    from obsigen.services import Services

logger = logging.getLogger(__name__)

FIRST_RUN_DELAY_S = 300.0


class RetentionScheduler:
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        store: ObjectStore | None,
        recorder: AuditRecorder | None,
        settings: RetentionSettings,
        first_delay_s: float | None = None,
    ) -> None:
        self._engine = engine
        self._sessions = sessions
        self._store = store
        self._recorder = recorder
        self._settings = settings
        self.interval_s = settings.interval_hours * 3600
        self.first_delay_s = (
            min(FIRST_RUN_DELAY_S, self.interval_s) if first_delay_s is None else first_delay_s
        )
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.runs = 0  # completed here, this process
        self.skipped = 0  # another process held the lock
        self.last_results: list[TenantPurge] = []

    @classmethod
    def from_services(cls, services: Services) -> RetentionScheduler:
        return cls(
            engine=services.engine,
            sessions=services.sessions,
            store=services.objects,
            recorder=services.audit,
            settings=services.settings.retention,
        )

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self.interval_s <= 0:
            logger.info("retention: scheduled purge disabled (retention.interval_hours = 0)")
            return
        if self.running:
            return
        self._stop.clear()
        self._task = asyncio.create_task(self._loop(), name="obsigen-retention")

    async def stop(self, grace_s: float = 10.0) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        self._stop.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), grace_s)
        await cancel_and_wait(task)

    async def run_once(self) -> list[TenantPurge] | None:
        """One purge under the lock; None when another process is running one."""
        async with retention_lock(self._engine) as acquired:
            if not acquired:
                self.skipped += 1
                logger.info("retention: another process is purging; skipped")
                return None
            purger = Purger(
                sessions=self._sessions,
                store=self._store,
                recorder=self._recorder,
                settings=self._settings,
                stop=self._stop,
            )
            results = await purger.run()
        self.runs += 1
        self.last_results = results
        removed = sum(result.total for result in results)
        failed = sum(sum(result.failed.values()) for result in results)
        logger.info(
            "retention: purge done, %d tenants, %d rows removed, %d objects kept after errors",
            len(results),
            removed,
            failed,
        )
        return results

    async def _wait(self, seconds: float) -> bool:
        """Sleep, or return True early when asked to stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)
        return self._stop.is_set()

    async def _loop(self) -> None:
        delay = self.first_delay_s
        while not await self._wait(delay):
            try:
                await self.run_once()
            except Exception:
                # The next interval tries again; the purge already audited what it removed.
                logger.exception("retention: scheduled purge failed")
            delay = self.interval_s
