"""Ingestion: an uploaded file -> text -> chunks -> embeddings -> ``document_chunks`` rows.

:func:`ingest_file` is the whole job for one file and stands alone (its dependencies come in
one :class:`IngestDeps`), so a task queue can run it as is. It is idempotent: a re-run
replaces the file's chunks. Progress lives in ``file_ingestions`` (queued -> running -> done,
failed or skipped) and is updated after every embedded batch. A file that fails (malformed,
encrypted, too slow to parse) ends ``failed`` with a message saying why; nothing of it stays
searchable, and the worker carries on with the next file.

:class:`IngestionWorker` is the embedded runner: an asyncio task in the server process fed
by a bounded queue. When the queue is full the file's row stays ``queued`` and a sweep picks
it up once the queue drains; rows left ``queued`` or ``running`` by a stopped process are
picked up when the next one starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from obsigen.cancellation import cancel_and_wait
from obsigen.db.base import new_id, utcnow
from obsigen.db.files_models import StoredFile
from obsigen.db.retrieval_models import DocumentChunk, FileIngestion
from obsigen.files.stores import ObjectKey, ObjectNotFound, ObjectStore
from obsigen.retrieval.chunking import Chunk, chunk_sections
from obsigen.retrieval.embeddings import Embedder, Vectors, to_bytes
from obsigen.retrieval.extract import ExtractionFailed, ExtractLimits, NoText, extract, kind_of
from obsigen.tenantkeys.bodies import cipher_of

log = logging.getLogger(__name__)

EMBED_BATCH = 32
MAX_ERROR_CHARS = 500
STATUSES = ("queued", "running", "done", "failed", "skipped")


@dataclass(frozen=True, slots=True)
class IngestDeps:
    sessions: async_sessionmaker[AsyncSession]
    store: ObjectStore
    # Called (in a worker thread) when the first batch needs it: loading takes a second.
    embedder: Callable[[], Embedder]
    limits: ExtractLimits = field(default_factory=ExtractLimits)
    # Bigger objects are not read whole into memory for extraction.
    max_bytes: int = 256 * 1024 * 1024
    # A parser that takes longer than this on one file is given up on.
    extract_timeout_s: float = 120.0


class FileGone(Exception):
    """The file was deleted (or never became ready) while it waited or was ingested."""


async def mark_queued(
    sessions: async_sessionmaker[AsyncSession], tenant_id: str, file_id: str
) -> None:
    """Create or reset the file's progress row to ``queued``."""
    async with sessions.begin() as session:
        changed = await session.execute(
            update(FileIngestion)
            .where(FileIngestion.tenant_id == tenant_id, FileIngestion.file_id == file_id)
            .values(status="queued", chunks_done=0, chunks_total=0, error="", updated_at=utcnow())
        )
        if changed.rowcount:  # type: ignore[attr-defined]
            return
    with contextlib.suppress(IntegrityError):
        # A concurrent enqueue of the same file made the row first: that is the same outcome.
        async with sessions.begin() as session:
            session.add(FileIngestion(tenant_id=tenant_id, file_id=file_id, status="queued"))


async def _set(
    sessions: async_sessionmaker[AsyncSession], tenant_id: str, file_id: str, **values: object
) -> None:
    async with sessions.begin() as session:
        changed = await session.execute(
            update(FileIngestion)
            .where(FileIngestion.tenant_id == tenant_id, FileIngestion.file_id == file_id)
            .values(updated_at=utcnow(), **values)
        )
        if not changed.rowcount:  # type: ignore[attr-defined]
            raise FileGone(file_id)


async def ingest_file(deps: IngestDeps, tenant_id: str, file_id: str) -> str:
    """Ingest one file; returns its final status (or ``gone`` when the file was deleted)."""
    async with deps.sessions() as session:
        row = await session.scalar(
            select(StoredFile).where(
                StoredFile.tenant_id == tenant_id,
                StoredFile.id == file_id,
                StoredFile.status == "ready",
            )
        )
    if row is None:
        return "gone"
    try:
        await mark_queued(deps.sessions, tenant_id, file_id)
        await _set(deps.sessions, tenant_id, file_id, status="running")
        return await _ingest(deps, row)
    except (FileGone, IntegrityError, ObjectNotFound):
        # Deleted under our feet: the cascade removed the chunks, the row and the progress.
        await _drop_chunks(deps.sessions, tenant_id, file_id)
        return "gone"
    except Exception as exc:  # any failure of one file ends as its status
        if isinstance(exc, ExtractionFailed):
            message = exc.detail
        elif isinstance(exc, TimeoutError):
            message = f"the file took longer than {deps.extract_timeout_s:.0f} s to read"
        else:
            log.exception("ingestion of file %s failed", file_id)
            message = f"ingestion failed ({type(exc).__name__})"
        await _drop_chunks(deps.sessions, tenant_id, file_id)
        status = "skipped" if isinstance(exc, NoText) else "failed"
        with contextlib.suppress(FileGone):
            await _set(
                deps.sessions, tenant_id, file_id, status=status, error=message[:MAX_ERROR_CHARS]
            )
        return status


async def _ingest(deps: IngestDeps, row: StoredFile) -> str:
    tenant_id, file_id = row.tenant_id, row.id
    kind = kind_of(row.content_type, row.name)
    if kind is None:
        raise NoText("files of this type have no text to index")
    data = await _read(deps, row, kind)
    async with asyncio.timeout(deps.extract_timeout_s):
        extracted = await asyncio.to_thread(extract, data, kind, deps.limits)
        chunks = await asyncio.to_thread(chunk_sections, extracted.sections)
    if len(data) < row.size:
        extracted.truncated = True
    del data
    await _drop_chunks(deps.sessions, tenant_id, file_id)
    await _set(deps.sessions, tenant_id, file_id, chunks_total=len(chunks), chunks_done=0)
    embedder = await asyncio.to_thread(deps.embedder) if chunks else None
    for start in range(0, len(chunks), EMBED_BATCH):
        assert embedder is not None
        batch = chunks[start : start + EMBED_BATCH]
        vectors = await embedder.aembed([chunk.text for chunk in batch])
        await _store_batch(deps.sessions, tenant_id, file_id, batch, vectors)
        await _set(deps.sessions, tenant_id, file_id, chunks_done=start + len(batch))
    note = ""
    if not chunks:
        note = "no text was found in the file (a scanned document?)"
    elif extracted.truncated:
        note = "the file is longer than the indexing limits: only its start is searchable"
    await _set(deps.sessions, tenant_id, file_id, status="done", error=note)
    return "done"


# Text kinds are indexed from their start only (``max_chars``): reading further is memory
# spent on bytes the extractor would cut off. Containers (PDF, OOXML) must be read whole.
PREFIX_KINDS = frozenset({"txt", "md", "csv", "json"})


async def _read(deps: IngestDeps, row: StoredFile, kind: str) -> bytes:
    too_large = f"the file is larger than {deps.max_bytes} bytes, the indexing limit"
    prefix = deps.limits.max_chars * 4 if kind in PREFIX_KINDS else None
    if prefix is None and row.size > deps.max_bytes:
        raise ExtractionFailed(too_large)
    # One growing buffer, not a list of pieces joined at the end (that doubles the peak).
    data = bytearray()
    stream = await deps.store.get_stream(ObjectKey.parse(row.object_key))
    try:
        async for piece in stream:
            data += piece
            if prefix is not None and len(data) >= prefix:
                del data[prefix:]
                break
            if len(data) > deps.max_bytes:
                raise ExtractionFailed(too_large)
    finally:
        # Stopping early must still close the file or the S3 body behind the stream.
        close = getattr(stream, "aclose", None)
        if close is not None:
            await close()
    return bytes(data)


async def _store_batch(
    sessions: async_sessionmaker[AsyncSession],
    tenant_id: str,
    file_id: str,
    batch: list[Chunk],
    vectors: Vectors,
) -> None:
    async with sessions.begin() as session:
        # Chunk text is tenant data like the file it came from: sealed under the tenant's
        # data key when tenant encryption is on (the cipher rides on the session).
        cipher = cipher_of(session)
        for chunk, vector in zip(batch, vectors, strict=True):
            row = DocumentChunk(
                id=new_id(),
                tenant_id=tenant_id,
                file_id=file_id,
                seq=chunk.seq,
                locator=chunk.locator,
                text=chunk.text,
                embedding=to_bytes(vector),
                token_count=chunk.token_count,
            )
            if cipher is not None:
                row.text = await cipher.encrypt_text(
                    tenant_id,
                    chunk.text,
                    table=DocumentChunk.__tablename__,
                    column="text",
                    row_id=row.id,
                    session=session,
                )
            session.add(row)


async def _drop_chunks(
    sessions: async_sessionmaker[AsyncSession], tenant_id: str, file_id: str
) -> None:
    async with sessions.begin() as session:
        await session.execute(
            delete(DocumentChunk).where(
                DocumentChunk.tenant_id == tenant_id, DocumentChunk.file_id == file_id
            )
        )


async def progress_of(session: AsyncSession, tenant_id: str, file_id: str) -> FileIngestion | None:
    return await session.scalar(
        select(FileIngestion).where(
            FileIngestion.tenant_id == tenant_id, FileIngestion.file_id == file_id
        )
    )


class IngestionWorker:
    """Runs :func:`ingest_file` for queued files, one at a time, in the server process."""

    def __init__(self, deps: IngestDeps, max_queue: int = 1000) -> None:
        self.deps = deps
        self._queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue(max_queue)
        self._waiting: set[tuple[str, str]] = set()
        self._task: asyncio.Task[None] | None = None
        self._overflow = False
        self._recover = True
        # Set once the start-up sweep queued what a previous process left behind.
        self._recovered = asyncio.Event()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="obsigen-ingestion"
            )

    async def enqueue(self, tenant_id: str, file_id: str) -> None:
        await mark_queued(self.deps.sessions, tenant_id, file_id)
        self.start()
        self._offer((tenant_id, file_id))

    def _offer(self, job: tuple[str, str]) -> None:
        if job in self._waiting:
            return  # idempotent: already waiting, and the row says queued
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            # The row stays queued; the sweep after the queue drains picks it up.
            self._overflow = True
            return
        self._waiting.add(job)

    async def join(self) -> None:
        """Wait until every queued file was processed (tests, benchmarks, shutdown)."""
        if self.running:
            await self._recovered.wait()
        while True:
            await self._queue.join()
            if not self._overflow:
                return
            await asyncio.sleep(0.01)

    async def _run(self) -> None:
        if self._recover:
            self._recover = False
            await self._sweep(("queued", "running"))
        self._recovered.set()
        while True:
            job = await self._queue.get()
            self._waiting.discard(job)
            try:
                await ingest_file(self.deps, *job)
            except Exception:
                log.exception("ingestion worker: file %s", job[1])
            finally:
                self._queue.task_done()
            if self._queue.empty() and self._overflow:
                self._overflow = False
                await self._sweep(("queued",))

    async def _sweep(self, statuses: tuple[str, ...]) -> None:
        room = self._queue.maxsize - self._queue.qsize()
        try:
            async with self.deps.sessions() as session:
                rows = (
                    await session.execute(
                        select(FileIngestion.tenant_id, FileIngestion.file_id)
                        .where(FileIngestion.status.in_(statuses))
                        .order_by(FileIngestion.updated_at)
                        .limit(room)
                    )
                ).all()
        except Exception:
            log.exception("ingestion worker: could not look for queued files")
            return
        for tenant_id, file_id in rows:
            self._offer((tenant_id, file_id))

    async def aclose(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
