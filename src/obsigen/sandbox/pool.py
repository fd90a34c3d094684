"""A warm pool of created, never-used sandboxes, bounded concurrency and back-pressure.

A run takes a ready sandbox (or makes one when none is ready), uses it once, and hands it to a
background teardown; the pool makes a replacement meanwhile. At most ``concurrency`` runs at
once; a run that cannot get a slot within ``queue_timeout_s`` gets :class:`SandboxBusy` (the
API answers 503 with Retry-After).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable

from obsigen.cancellation import cancel_and_wait
from obsigen.metrics import counts_runs
from obsigen.sandbox.interfaces import (
    BackendName,
    Limits,
    PreparedSandbox,
    RunRequest,
    RunResult,
    SandboxBackend,
    SandboxBusy,
    SandboxUnavailable,
    check_request,
)
from obsigen.sandbox.workspace import check_file_name

log = logging.getLogger(__name__)

# After a failed prepare, wait before the next try instead of spinning.
REFILL_BACKOFF_S = (0.5, 2.0, 10.0, 30.0)


class SandboxPool:
    def __init__(
        self,
        backend: SandboxBackend,
        limits: Limits,
        *,
        size: int,
        concurrency: int,
        queue_timeout_s: float,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self._backend = backend
        self.limits = limits
        self._size = size
        self._concurrency = concurrency
        self._queue_timeout_s = queue_timeout_s
        self._on_close = on_close
        self._ready: collections.deque[PreparedSandbox] = collections.deque()
        self._slots: asyncio.Semaphore | None = None
        self._filler: asyncio.Task[None] | None = None
        self._teardowns: set[asyncio.Task[None]] = set()
        self._closed = False
        self._failures = 0

    @property
    def backend(self) -> BackendName:
        return self._backend.name

    @property
    def ready(self) -> int:
        return len(self._ready)

    def warm(self) -> None:
        """Start making sandboxes ahead (needs a running event loop)."""
        if self._closed or self._size == 0:
            return
        if self._filler is None or self._filler.done():
            self._filler = asyncio.get_running_loop().create_task(self._fill())

    async def _fill(self) -> None:
        while not self._closed and len(self._ready) < self._size:
            try:
                sandbox = await self._backend.prepare(self.limits)
            except Exception:
                delay = REFILL_BACKOFF_S[min(self._failures, len(REFILL_BACKOFF_S) - 1)]
                self._failures += 1
                log.exception(
                    "could not prepare a %s sandbox; retrying in %ss", self.backend, delay
                )
                await asyncio.sleep(delay)
                continue
            self._failures = 0
            if self._closed:
                await sandbox.discard()
                return
            self._ready.append(sandbox)

    def _slots_now(self) -> asyncio.Semaphore:
        # Made on first use so that it belongs to the loop that serves requests.
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._concurrency)
        return self._slots

    async def _take(self, limits: Limits) -> PreparedSandbox:
        if limits == self.limits and self._ready:
            return self._ready.popleft()
        return await self._backend.prepare(limits)

    def _teardown_later(self, sandbox: PreparedSandbox) -> None:
        task = asyncio.get_running_loop().create_task(sandbox.discard())
        self._teardowns.add(task)
        task.add_done_callback(self._teardown_done)

    def _teardown_done(self, task: asyncio.Task[None]) -> None:
        self._teardowns.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("sandbox teardown failed", exc_info=task.exception())

    @counts_runs
    async def run(self, request: RunRequest) -> RunResult:
        check_request(request)
        for name in request.files:
            check_file_name(name)
        if self._closed:
            raise SandboxUnavailable("the sandbox pool is shut down")
        slots = self._slots_now()
        try:
            await asyncio.wait_for(slots.acquire(), timeout=self._queue_timeout_s)
        except TimeoutError:
            raise SandboxBusy(
                f"all {self._concurrency} code execution slots are busy; retry shortly",
                retry_after_s=max(1, round(self.limits.wall_time_s / 4)),
            ) from None
        try:
            sandbox = await self._take(request.limits or self.limits)
            try:
                return await sandbox.run(request)
            finally:
                self._teardown_later(sandbox)
                # Refilled after the run, not during it: making a sandbox takes a core for
                # ~0.15 s, which the run would otherwise compete with.
                self.warm()
        finally:
            slots.release()

    async def drain(self) -> None:
        """Wait for every teardown started so far (tests and shutdown)."""
        while self._teardowns:
            await asyncio.gather(*self._teardowns, return_exceptions=True)

    async def aclose(self) -> None:
        self._closed = True
        if self._filler is not None:
            await cancel_and_wait(self._filler)
        while self._ready:
            self._teardown_later(self._ready.popleft())
        await self.drain()
        await self._backend.aclose()
        if self._on_close is not None:
            await asyncio.to_thread(self._on_close)
