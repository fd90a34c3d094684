"""Uploads are indexed in the background: progress is visible, every type works, bad files
fail clearly without stopping the worker, and chunks go when their file goes."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update
from tests.integration.retrieval.conftest import RetrievalPlatform
from tests.unit.retrieval.documents import docx_bytes, pdf, pptx_bytes, xlsx_bytes

from obsigen.authz.permissions import Role
from obsigen.config import RetentionSettings
from obsigen.db.files_models import StoredFile
from obsigen.db.retrieval_models import DocumentChunk, FileIngestion
from obsigen.files.stores import ObjectKey
from obsigen.retention.purge import Purger
from obsigen.retrieval.ingestion import IngestionWorker, ingest_file

SAMPLES = {
    "report.pdf": (pdf(["Intro page", "The turbine output was 42 megawatts."]), "page 2"),
    "plan.docx": (docx_bytes({"Turbines": ["The turbine output was 42 megawatts."]}), None),
    "sheet.xlsx": (xlsx_bytes({"Output": [["Turbine", "Megawatts"], ["T1", 42]]}), None),
    "deck.pptx": (pptx_bytes([("Intro", "hello"), ("Turbines", "output 42 megawatts")]), None),
    "notes.txt": (b"The turbine output was 42 megawatts.\n", "lines 1-1"),
    "notes.md": (b"# Turbines\nThe turbine output was 42 megawatts.\n", "section Turbines"),
    "table.csv": (b"turbine,megawatts\nT1,42\n", "rows 1-2"),
    "data.json": (b'{"turbine": "T1", "megawatts": 42}', "lines 1-1"),
}
EXPECTED_LOCATORS = {
    "plan.docx": "section Turbines",
    "sheet.xlsx": "sheet Output, rows 1-2",
    "deck.pptx": "slide 2",
}


async def chunk_count(platform: RetrievalPlatform, file_id: str) -> int:
    async with platform.services.sessions() as session:
        return int(
            await session.scalar(
                select(func.count())
                .select_from(DocumentChunk)
                .where(DocumentChunk.file_id == file_id)
            )
            or 0
        )


@pytest.mark.parametrize("name", sorted(SAMPLES))
async def test_every_type_is_indexed_and_found_at_its_locator(
    retrieval_platform: RetrievalPlatform, name: str
) -> None:
    platform = retrieval_platform
    key = await platform.api_key()
    data, locator = SAMPLES[name]
    progress = await platform.indexed(key, name, data)
    assert progress["status"] == "done", progress
    assert progress["chunks_done"] == progress["chunks_total"] >= 1
    response = await platform.search(key, "turbine megawatts", top_k=3)
    assert response.status_code == 200, response.text
    top = response.json()["results"][0]
    assert top["file_name"] == name
    assert top["locator"] == (locator or EXPECTED_LOCATORS[name])
    assert top["citation"] == f"[1] {name}, {top['locator']}"
    assert "42" in top["text"]


async def test_a_corrupt_file_fails_with_a_clear_error_and_the_worker_goes_on(
    retrieval_platform: RetrievalPlatform,
) -> None:
    platform = retrieval_platform
    key = await platform.api_key()
    # Passes the upload checks (it starts like a PDF), but no parser can read it.
    broken = await platform.upload(key, "broken.pdf", b"%PDF-1.7\n" + b"\x00\x01garbage" * 300)
    good = await platform.upload(key, "good.txt", b"The ferry leaves at noon.\n")
    await platform.retrieval.ingestion.join()
    failed = await platform.client.get(
        f"/api/v1/files/{broken['id']}/ingestion", headers=platform.auth(key)
    )
    assert failed.json()["status"] == "failed"
    assert failed.json()["error"].startswith("the PDF file could not be read")
    assert await chunk_count(platform, broken["id"]) == 0
    done = await platform.client.get(
        f"/api/v1/files/{good['id']}/ingestion", headers=platform.auth(key)
    )
    assert done.json()["status"] == "done"


async def test_a_malformed_office_file_ends_failed_with_the_reason(
    retrieval_platform: RetrievalPlatform,
) -> None:
    platform = retrieval_platform
    key = await platform.api_key()
    uploaded = await platform.upload(key, "plan.docx", docx_bytes({"A": ["b"]}))
    await platform.retrieval.ingestion.join()
    # The object is replaced behind the row's back by bytes no parser can read.
    async with platform.services.sessions() as session:
        row = await session.get(StoredFile, uploaded["id"])
        assert row is not None

    async def junk() -> AsyncIterator[bytes]:
        yield b"PK\x03\x04" + b"\xff" * 100

    await platform.services.objects.put_stream(ObjectKey.parse(row.object_key), junk())
    status = await ingest_file(platform.retrieval.ingestion.deps, row.tenant_id, row.id)
    assert status == "failed"
    progress = (
        await platform.client.get(
            f"/api/v1/files/{uploaded['id']}/ingestion", headers=platform.auth(key)
        )
    ).json()
    assert progress["status"] == "failed"
    assert "DOCX file could not be read" in progress["error"]
    assert await chunk_count(platform, uploaded["id"]) == 0


async def test_images_are_skipped_not_failed(retrieval_platform: RetrievalPlatform) -> None:
    from tests.unit.files.file_samples import png

    platform = retrieval_platform
    key = await platform.api_key()
    progress = await platform.indexed(key, "pic.png", png())
    assert progress["status"] == "skipped"
    assert progress["chunks_total"] == 0


async def test_ingesting_twice_replaces_the_chunks(retrieval_platform: RetrievalPlatform) -> None:
    platform = retrieval_platform
    key = await platform.api_key()
    text = ("Paragraph about glaciers and ice. " * 60 + "\n\n") * 5
    uploaded = await platform.upload(key, "ice.txt", text.encode())
    await platform.retrieval.ingestion.join()
    first = await chunk_count(platform, uploaded["id"])
    assert first > 1
    async with platform.services.sessions() as session:
        row = await session.get(StoredFile, uploaded["id"])
    assert row is not None
    deps = platform.retrieval.ingestion.deps
    assert await ingest_file(deps, row.tenant_id, row.id) == "done"
    await platform.retrieval.enqueue(row.tenant_id, row.id)
    await platform.retrieval.enqueue(row.tenant_id, row.id)
    await platform.retrieval.ingestion.join()
    assert await chunk_count(platform, uploaded["id"]) == first


async def test_progress_is_private_like_the_file(retrieval_platform: RetrievalPlatform) -> None:
    platform = retrieval_platform
    tenant = await platform.tenant()
    owner = await platform.api_key(tenant)
    colleague = (await platform.login(tenant, Role.ADMIN)).token
    uploaded = await platform.upload(owner, "mine.txt", b"private notes\n")
    await platform.retrieval.ingestion.join()
    response = await platform.client.get(
        f"/api/v1/files/{uploaded['id']}/ingestion", headers=platform.auth(colleague)
    )
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_queued_work_left_by_a_stopped_process_is_picked_up(
    retrieval_platform: RetrievalPlatform,
) -> None:
    platform = retrieval_platform
    key = await platform.api_key()
    await platform.retrieval.aclose()
    # The upload queues the file and starts the worker again: stop it before it runs.
    uploaded = await platform.upload(key, "later.txt", b"Picked up after a restart.\n")
    await platform.retrieval.aclose()
    async with platform.services.sessions.begin() as session:
        await session.execute(
            update(FileIngestion)
            .where(FileIngestion.file_id == uploaded["id"])
            .values(status="running")
        )
    # A fresh worker (a new process) finds it.
    worker = IngestionWorker(platform.retrieval.ingestion.deps)
    worker.start()
    try:
        async with asyncio.timeout(30):
            await worker.join()
    finally:
        await worker.aclose()
    assert await status_of(platform, uploaded["id"]) == "done"
    assert await chunk_count(platform, uploaded["id"]) == 1


async def status_of(platform: RetrievalPlatform, file_id: str) -> str | None:
    async with platform.services.sessions() as session:
        return await session.scalar(
            select(FileIngestion.status).where(FileIngestion.file_id == file_id)
        )


async def test_deleting_a_file_removes_its_chunks(retrieval_platform: RetrievalPlatform) -> None:
    platform = retrieval_platform
    key = await platform.api_key()
    uploaded = await platform.upload(key, "gone.txt", b"Soon deleted: the walrus text.\n")
    await platform.retrieval.ingestion.join()
    assert await chunk_count(platform, uploaded["id"]) == 1
    response = await platform.client.delete(
        f"/api/v1/files/{uploaded['id']}", headers=platform.auth(key)
    )
    assert response.status_code == 204
    assert await chunk_count(platform, uploaded["id"]) == 0
    async with platform.services.sessions() as session:
        left = await session.scalar(
            select(func.count())
            .select_from(FileIngestion)
            .where(FileIngestion.file_id == uploaded["id"])
        )
    assert left == 0
    assert (await platform.search(key, "walrus")).json()["results"] == []


async def test_the_retention_purge_removes_the_chunks_of_expired_files(
    retrieval_platform: RetrievalPlatform,
) -> None:
    platform = retrieval_platform
    tenant = await platform.tenant()
    key = await platform.api_key(tenant)
    old = await platform.upload(key, "old.txt", b"An expired memo about otters.\n")
    fresh = await platform.upload(key, "fresh.txt", b"A current memo about otters.\n")
    await platform.retrieval.ingestion.join()
    async with platform.services.sessions.begin() as session:
        await session.execute(
            update(StoredFile)
            .where(StoredFile.id == old["id"])
            .values(created_at=datetime.now(UTC) - timedelta(days=400))
        )
    purger = Purger(
        platform.services.sessions,
        platform.services.objects,
        None,
        RetentionSettings(files_days=30),
    )
    (result,) = await purger.run(tenant=tenant)
    assert result.removed["files"] == 1
    assert await chunk_count(platform, old["id"]) == 0
    assert await chunk_count(platform, fresh["id"]) == 1
    names = [r["file_name"] for r in (await platform.search(key, "otters")).json()["results"]]
    assert names == ["fresh.txt"]


class CountingStore:
    """The platform's store, counting the bytes handed out by ``get_stream``."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.read = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def get_stream(self, key: ObjectKey) -> AsyncIterator[bytes]:
        stream = await self.store.get_stream(key)

        async def counted() -> AsyncIterator[bytes]:
            async for piece in stream:
                self.read += len(piece)
                yield piece

        return counted()


async def test_a_long_text_file_is_read_only_as_far_as_it_is_indexed(
    retrieval_platform: RetrievalPlatform,
) -> None:
    # Text past max_chars is never indexed: the ingestion must not hold the rest in memory
    # either (a 200 MB upload used to be read whole, and twice over, by the embedded server).
    platform = retrieval_platform
    key = await platform.api_key()
    head = "Opening lines about the harbour cranes.\n" * 20
    tail = "Closing lines about a lighthouse keeper.\n" * 100_000  # about 4 MB
    uploaded = await platform.upload(key, "long.txt", (head + tail).encode())
    await platform.retrieval.ingestion.join()
    async with platform.services.sessions() as session:
        row = await session.get(StoredFile, uploaded["id"])
    assert row is not None
    deps = platform.retrieval.ingestion.deps
    store = CountingStore(deps.store)
    small = dataclasses.replace(
        deps, store=store, limits=dataclasses.replace(deps.limits, max_chars=len(head))
    )
    assert await ingest_file(small, row.tenant_id, row.id) == "done"
    assert 0 < store.read < row.size / 4
    response = await platform.client.get(
        f"/api/v1/files/{uploaded['id']}/ingestion", headers=platform.auth(key)
    )
    assert "only its start is searchable" in response.json()["error"]
    assert await chunk_count(platform, uploaded["id"]) >= 1
