"""The ingestion task: one uploaded file, run by whichever worker takes the message.

Delivery is at least once, so the task is idempotent: it runs under a lock named after the
file (a second delivery waits for the first to end) and does nothing when the file's progress
row says a run already finished (``done``, ``failed`` or ``skipped``). A re-index resets the
row to ``queued`` first, so it is not mistaken for a duplicate.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from obsigen.db.base import utcnow
from obsigen.db.retrieval_models import FileIngestion
from obsigen.retrieval.ingestion import IngestDeps, ingest_file, progress_of
from obsigen.tasks.locks import work_lock
from obsigen.tasks.queue import TaskQueue

log = logging.getLogger(__name__)

INGEST_TASK = "obsigen.ingest_file"
UNFINISHED = ("queued", "running")


class WorkBusy(Exception):
    """Another run of the same work held its lock for longer than ``tasks.lock_wait_s``."""


def register_ingestion(queue: TaskQueue, engine: AsyncEngine, deps: IngestDeps) -> None:
    wait_s = queue.settings.lock_wait_s

    async def ingest(tenant_id: str, file_id: str) -> str:
        async with work_lock(engine, f"ingest:{tenant_id}:{file_id}", wait_s) as held:
            if not held:
                raise WorkBusy(f"file {file_id} is being ingested by another worker")
            async with deps.sessions() as session:
                progress = await progress_of(session, tenant_id, file_id)
            if progress is not None and progress.status not in UNFINISHED:
                # A redelivery of a task that already ran to the end: the work is done once.
                return f"already {progress.status}"
            return await ingest_file(deps, tenant_id, file_id)

    queue.register(INGEST_TASK, ingest)


async def send_ingestion(queue: TaskQueue, tenant_id: str, file_id: str) -> None:
    await queue.kick(INGEST_TASK, tenant_id=tenant_id, file_id=file_id)


async def requeue_stranded(queue: TaskQueue, deps: IngestDeps, older_than_s: float) -> int:
    """Send again files left ``queued``/``running`` for longer than ``older_than_s``.

    Covers an API process that died between marking a file queued and sending its task.
    A file whose task is still on the queue gets a second one; the lock and the status check
    make that one a no-op.
    """
    cutoff = utcnow() - timedelta(seconds=older_than_s)
    async with deps.sessions() as session:
        rows = (
            await session.execute(
                select(FileIngestion.tenant_id, FileIngestion.file_id).where(
                    FileIngestion.status.in_(UNFINISHED), FileIngestion.updated_at < cutoff
                )
            )
        ).all()
    for tenant_id, file_id in rows:
        await send_ingestion(queue, tenant_id, file_id)
    if rows:
        log.info("tasks: sent %d stranded ingestions again", len(rows))
    return len(rows)
