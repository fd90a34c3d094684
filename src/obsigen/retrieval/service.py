"""The retrieval service the platform holds: the searcher and the ingestion worker."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from obsigen.files.stores import ObjectStore
from obsigen.retrieval.embeddings import Embedder, shared_embedder
from obsigen.retrieval.extract import ExtractLimits
from obsigen.retrieval.ingestion import IngestDeps, IngestionWorker, mark_queued
from obsigen.retrieval.search import Searcher


class RetrievalService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        store: ObjectStore,
        embedder: Callable[[], Embedder] = shared_embedder,
        limits: ExtractLimits | None = None,
        max_queue: int = 1000,
    ) -> None:
        self.searcher = Searcher(sessions, embedder)
        self.ingestion = IngestionWorker(
            IngestDeps(sessions, store, embedder, limits or ExtractLimits()), max_queue
        )
        # Set when a task queue with its own workers runs ingestion (docs/tasks.md): this
        # process then only marks files queued and sends their tasks.
        self._send: Callable[[str, str], Awaitable[None]] | None = None

    def send_to(self, send: Callable[[str, str], Awaitable[None]]) -> None:
        self._send = send

    def start(self) -> None:
        """Start the worker (and pick up files a previous process left queued)."""
        if self._send is None:
            self.ingestion.start()

    async def enqueue(self, tenant_id: str, file_id: str) -> None:
        if self._send is None:
            await self.ingestion.enqueue(tenant_id, file_id)
            return
        await mark_queued(self.ingestion.deps.sessions, tenant_id, file_id)
        await self._send(tenant_id, file_id)

    async def aclose(self) -> None:
        await self.ingestion.aclose()


def retrieval_of(services: object) -> RetrievalService | None:
    """The platform's retrieval service, where the deployment has one."""
    found = getattr(services, "retrieval", None)
    return found if isinstance(found, RetrievalService) else None
