"""Ingestion and search speed: ``.venv/bin/python -m bench.ingest [--quick]``.

One process, a fresh SQLite database and local object store. The corpus is the written test
documents (tests/data/retrieval) repeated with numbered variations, as Markdown, plus PDF and
DOCX versions. Measured:

- ``ingest``: whole :func:`ingest_file` jobs (read, extract, chunk, embed, store, progress),
  as chunks/s and files/s;
- ``embed``: the embedding step alone on the same chunks, chunks/s (what the rest costs is
  the difference);
- ``search``: hybrid search latency (p50/p99) over everything ingested, as one user.

Writes ``bench/results/ingest.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from tests.unit.retrieval.documents import docx_bytes, pdf

from bench.report import machine_info, write_suite
from bench.timing import time_async
from obsigen.authz.principal import Principal
from obsigen.db.engine import make_engine, make_sessionmaker
from obsigen.db.files_models import StoredFile
from obsigen.db.migrate import upgrade_to_head
from obsigen.files.local_store import LocalObjectStore
from obsigen.files.stores import ObjectKey
from obsigen.identity.tenants import create_tenant
from obsigen.retrieval.chunking import chunk_sections
from obsigen.retrieval.embeddings import INTRA_OP_THREADS, shared_embedder
from obsigen.retrieval.extract import extract
from obsigen.retrieval.ingestion import IngestDeps, ingest_file, mark_queued
from obsigen.retrieval.search import Searcher

CORPUS = Path(__file__).parents[1] / "tests" / "data" / "retrieval"
MIME = {
    "md": "text/markdown; charset=utf-8",
    "pdf": "application/pdf",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
}


def documents(copies: int) -> list[tuple[str, str, bytes]]:
    """(name, kind, bytes): each written document ``copies`` times, in three formats."""
    out = []
    for path in sorted(CORPUS.glob("*.md")):
        text = path.read_text()
        paragraphs = [p for p in text.split("\n\n") if p.strip()]
        for copy in range(copies):
            variant = text.replace("\n\n", f"\n\nRevision {copy}. ")
            out.append((f"{path.stem}-{copy}.md", "md", variant.encode()))
            if copy % 3 == 1:
                out.append((f"{path.stem}-{copy}.pdf", "pdf", pdf(paragraphs)))
            if copy % 3 == 2:
                sections = {f"Part {i}": [p] for i, p in enumerate(paragraphs)}
                out.append((f"{path.stem}-{copy}.docx", "docx", docx_bytes(sections)))
    return out


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def run(quick: bool) -> dict[str, Any]:
    copies = 3 if quick else 12
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite+aiosqlite:///{tmp}/bench.db")
        await upgrade_to_head(engine)
        sessions = make_sessionmaker(engine)
        store = LocalObjectStore(Path(tmp) / "objects")
        async with sessions.begin() as session:
            tenant = await create_tenant(session, f"bench-{uuid.uuid4().hex[:8]}")
        owner = Principal(tenant.id, "user", uuid.uuid4().hex, frozenset({"member"}))
        files = documents(copies)
        ids = []
        for name, kind, data in files:
            key = ObjectKey(tenant.id, uuid.uuid4().hex)
            result = await store.put_stream(key, _one(data))
            async with sessions.begin() as session:
                row = StoredFile(
                    id=key.object_id,
                    tenant_id=tenant.id,
                    owner_kind=owner.kind,
                    owner_id=owner.id,
                    name=name,
                    content_type=MIME[kind],
                    size=result.size,
                    sha256=result.sha256,
                    object_key=str(key),
                    status="ready",
                )
                session.add(row)
            await mark_queued(sessions, tenant.id, key.object_id)
            ids.append(key.object_id)
        deps = IngestDeps(sessions, store, shared_embedder)
        shared_embedder().embed(["warm up"])
        started = time.perf_counter()
        statuses = [await ingest_file(deps, tenant.id, file_id) for file_id in ids]
        ingest_s = time.perf_counter() - started
        assert set(statuses) == {"done"}, statuses

        texts = [
            chunk.text
            for _, kind, data in files
            for chunk in chunk_sections(extract(data, kind).sections)
        ]
        started = time.perf_counter()
        shared_embedder().embed(texts)
        embed_s = time.perf_counter() - started

        searcher = Searcher(sessions, shared_embedder)
        queries = ["how long are invoices kept", "tyre pressure for mountain bikes"]
        counter = iter(range(10**9))

        async def one_search() -> None:
            await searcher.search(owner, queries[next(counter) % len(queries)], 5)

        search = await time_async(one_search, rounds=20 if quick else 100, warmup=5)
        await engine.dispose()
    chunks = len(texts)
    return {
        "parameters": {
            "files": len(files),
            "chunks": chunks,
            "intra_op_threads": INTRA_OP_THREADS,
            "quick": quick,
        },
        "ingest": {
            "seconds": round(ingest_s, 2),
            "chunks_per_s": round(chunks / ingest_s, 1),
            "files_per_s": round(len(files) / ingest_s, 2),
        },
        "embed": {"seconds": round(embed_s, 2), "chunks_per_s": round(chunks / embed_s, 1)},
        "search": {**search, "candidate_chunks": chunks},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    body = asyncio.run(run(args.quick))
    path = write_suite("ingest", machine_info(), body)
    print(
        f"ingest: {body['ingest']['chunks_per_s']} chunks/s "
        f"({body['parameters']['chunks']} chunks, {body['parameters']['files']} files); "
        f"embedding alone {body['embed']['chunks_per_s']} chunks/s; "
        f"search p50 {body['search']['median_us'] / 1000:.1f} ms -> {path}"
    )


if __name__ == "__main__":
    main()
