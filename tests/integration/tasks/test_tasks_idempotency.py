"""At-least-once delivery made safe: the ingestion task delivered twice does the work once."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import func, select, update
from tests.integration.tasks.conftest import TasksPlatform

from obsigen.db.retrieval_models import DocumentChunk, FileIngestion
from obsigen.retrieval.ingestion import mark_queued
from obsigen.tasks import ingest as ingest_module
from obsigen.tasks.ingest import INGEST_TASK

TEXT = ("Heat pumps move heat from outside air into the house. " * 40).encode()


async def chunk_rows(p: TasksPlatform, file_id: str) -> tuple[int, int]:
    """(rows, distinct seq): equal when there is no duplicate chunk."""
    async with p.services.sessions() as session:
        rows = await session.scalar(
            select(func.count()).select_from(DocumentChunk).where(DocumentChunk.file_id == file_id)
        )
        seqs = await session.scalar(
            select(func.count(func.distinct(DocumentChunk.seq))).where(
                DocumentChunk.file_id == file_id
            )
        )
    return int(rows or 0), int(seqs or 0)


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    runs: list[str] = []
    real = ingest_module.ingest_file

    async def counting(deps: Any, tenant_id: str, file_id: str) -> str:
        runs.append(file_id)
        await asyncio.sleep(0.2)  # long enough for the second delivery to arrive meanwhile
        return await real(deps, tenant_id, file_id)

    monkeypatch.setattr(ingest_module, "ingest_file", counting)
    return runs


async def test_a_task_delivered_twice_at_once_ingests_the_file_once(
    tasks_platform: TasksPlatform, counted: list[str]
) -> None:
    p = tasks_platform
    key = await p.api_key()
    uploaded = await p.upload(key, "pumps.txt", TEXT)
    await p.retrieval.ingestion.join()
    before = await chunk_rows(p, uploaded["id"])
    assert before[0] > 0
    assert before[0] == before[1]
    tenant_id = await p.tenant_id_of_file(uploaded["id"])
    async with p.services.sessions.begin() as session:
        await session.execute(
            update(FileIngestion)
            .where(FileIngestion.file_id == uploaded["id"])
            .values(status="queued")
        )
    counted.clear()

    # The same message twice (a redelivery racing the first run), then once more afterwards.
    await asyncio.gather(
        p.queue.kick(INGEST_TASK, tenant_id=tenant_id, file_id=uploaded["id"]),
        p.queue.kick(INGEST_TASK, tenant_id=tenant_id, file_id=uploaded["id"]),
    )
    await p.queue.join()
    await p.queue.kick(INGEST_TASK, tenant_id=tenant_id, file_id=uploaded["id"])
    await p.queue.join()

    assert counted == [uploaded["id"]]
    assert await chunk_rows(p, uploaded["id"]) == before
    async with p.services.sessions() as session:
        status = await session.scalar(
            select(FileIngestion.status).where(FileIngestion.file_id == uploaded["id"])
        )
    assert status == "done"


async def test_a_reindex_is_not_mistaken_for_a_duplicate(
    tasks_platform: TasksPlatform, counted: list[str]
) -> None:
    p = tasks_platform
    key = await p.api_key()
    uploaded = await p.upload(key, "pumps.txt", TEXT)
    await p.retrieval.ingestion.join()
    before = await chunk_rows(p, uploaded["id"])
    counted.clear()
    tenant_id = await p.tenant_id_of_file(uploaded["id"])
    # What RetrievalService.enqueue does with a remote queue: mark queued, then send.
    await mark_queued(p.services.sessions, tenant_id, uploaded["id"])
    await p.queue.kick(INGEST_TASK, tenant_id=tenant_id, file_id=uploaded["id"])
    await p.queue.join()
    assert counted == [uploaded["id"]]
    assert await chunk_rows(p, uploaded["id"]) == before
