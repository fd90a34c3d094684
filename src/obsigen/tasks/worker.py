"""``obsigen worker``: runs the tasks API processes send, until SIGTERM or SIGINT.

Graceful shutdown: the first signal stops taking messages; tasks in flight get
``tasks.shutdown_grace_s`` to finish and be acknowledged. A task still running after that
is not acknowledged and goes to another worker after ``tasks.redelivery_after_s`` (Redis
streams have no negative acknowledgement: "not acknowledged" is the nack). A second signal
exits at once, with the same outcome for unfinished tasks.

The worker also runs the scheduled retention purge (one process at a time across the
deployment, by the database lock) and, at start, sends again ingestions that an API process
marked queued but died before sending.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from taskiq import TaskiqMiddleware
from taskiq.acks import AcknowledgeType
from taskiq.message import TaskiqMessage
from taskiq.receiver import Receiver
from taskiq.result import TaskiqResult

from obsigen.config import Settings
from obsigen.db.migrate import current_revision, head_revision
from obsigen.retention.scheduler import RetentionScheduler
from obsigen.services import Services, build_services
from obsigen.tasks.ingest import requeue_stranded
from obsigen.tasks.queue import ReclaimingStreamBroker

log = logging.getLogger(__name__)


class WorkerNotRunnable(RuntimeError):
    pass


async def run_worker(
    settings: Settings, stop: asyncio.Event | None = None, services: Services | None = None
) -> None:
    """Run until ``stop`` is set (by SIGTERM/SIGINT when not given). Given ``services``
    (tests) are used as they are and left open."""
    if services is not None:
        await _run(services, stop)
        return
    owned = build_services(settings)
    try:
        await _run(owned, stop)
    finally:
        await owned.aclose()


async def _run(services: Services, stop: asyncio.Event | None) -> None:
    queue = services.tasks
    if queue is None or not queue.remote:
        raise WorkerNotRunnable(
            "no task broker is configured: set storage.redis_url (tasks run in the server "
            "process without one)"
        )
    if await current_revision(services.engine) != head_revision():
        raise WorkerNotRunnable("the database schema is not current: run `obsigen migrate`")
    if stop is None:
        stop = _stop_on_signals()
    settings = services.settings
    queue.broker.is_worker_process = True
    services.audit.start()
    await queue.start()
    if services.retrieval is not None:
        await requeue_stranded(
            queue, services.retrieval.ingestion.deps, settings.tasks.redelivery_after_s
        )
    retention = RetentionScheduler.from_services(services)
    retention.start()
    executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="obsigen-task")
    receiver = Receiver(
        queue.broker,
        executor=executor,
        max_async_tasks=settings.tasks.concurrency,
        # Acknowledged only after the task ran (and its retry, if any, was sent).
        ack_type=AcknowledgeType.WHEN_EXECUTED,
        wait_tasks_timeout=settings.tasks.shutdown_grace_s,
        run_startup=False,
    )
    in_flight = InFlight()
    queue.broker.add_middlewares(in_flight)
    log.info("worker: taking tasks from %s", settings.tasks.queue)
    receiver_stop = asyncio.Event()
    listening = asyncio.create_task(receiver.listen(receiver_stop), name="obsigen-worker-listen")
    try:
        await asyncio.wait(
            {listening, asyncio.create_task(stop.wait())}, return_when="FIRST_COMPLETED"
        )
        if listening.done():
            listening.result()  # the broker failed: raise it
            return
        if isinstance(queue.broker, ReclaimingStreamBroker):
            queue.broker.closing = True
        receiver_stop.set()
        # Our own wait rather than the receiver's: its shutdown can stall closing the Redis
        # listener (a cancelled read that never ends), and then never waits for the tasks.
        await in_flight.drained(settings.tasks.shutdown_grace_s)
        if in_flight.count:
            log.warning("worker: %d tasks unfinished; they are redelivered", in_flight.count)
        done, _ = await asyncio.wait({listening}, timeout=3.0)
        if not done:
            listening.cancel()
            await asyncio.wait({listening}, timeout=1.0)
    finally:
        await retention.stop()
        executor.shutdown(wait=False, cancel_futures=True)
    log.info("worker: stopped")


class InFlight(TaskiqMiddleware):
    """Counts the tasks this worker is running; post_execute comes after the acknowledgement."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def pre_execute(self, message: TaskiqMessage) -> TaskiqMessage:
        self.count += 1
        self._idle.clear()
        return message

    def post_execute(self, message: TaskiqMessage, result: TaskiqResult[Any]) -> None:
        self.count -= 1
        if self.count == 0:
            self._idle.set()

    async def drained(self, grace_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), grace_s)


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals > 1:
            log.warning("worker: second signal, exiting now; unfinished tasks are redelivered")
            raise SystemExit(1)
        log.info("worker: stopping; finishing the tasks in hand")
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    return stop
