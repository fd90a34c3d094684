"""``GET /api/v1/search`` (cited excerpts from the caller's files) and
``GET /api/v1/files/{id}/ingestion`` (how far indexing of one file got).

Both follow the files access rule: only the caller's own files, the same 404 for a file that
is missing and one that is not theirs. Searches are audited as ``retrieval.query``.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from obsigen.audit.events import AuditEvent, actor_of, digest
from obsigen.authz.permissions import Permission
from obsigen.authz.principal import Principal
from obsigen.errors import Unavailable
from obsigen.files.access import access_file
from obsigen.retrieval.ingestion import progress_of
from obsigen.retrieval.search import MAX_QUERY_CHARS, MAX_TOP_K
from obsigen.retrieval.service import RetrievalService, retrieval_of
from obsigen.web.auth import require, services_of

router = APIRouter(prefix="/api/v1", tags=["search"])


class IngestionOut(BaseModel):
    file_id: str
    # none (never queued: uploaded before indexing ran) | queued | running | done | failed | skipped
    status: str
    chunks_done: int
    chunks_total: int
    error: str
    updated_at: datetime | None


class ExcerptOut(BaseModel):
    number: int
    file_id: str
    file_name: str
    locator: str
    citation: str
    text: str
    score: float


class SearchOut(BaseModel):
    query: str
    results: list[ExcerptOut]


def _retrieval(request: Request) -> RetrievalService:
    retrieval = retrieval_of(services_of(request))
    if retrieval is None:
        raise Unavailable("file search is not enabled on this server")
    return retrieval


@router.get("/files/{file_id}/ingestion")
async def ingestion(
    file_id: str, request: Request, principal: Principal = require(Permission.FILES_READ)
) -> IngestionOut:
    async with services_of(request).sessions() as session:
        row = await access_file(session, principal, file_id)
        progress = await progress_of(session, principal.tenant_id, row.id)
    if progress is None:
        return IngestionOut(
            file_id=row.id, status="none", chunks_done=0, chunks_total=0, error="", updated_at=None
        )
    return IngestionOut(
        file_id=row.id,
        status=progress.status,
        chunks_done=progress.chunks_done,
        chunks_total=progress.chunks_total,
        error=progress.error,
        updated_at=progress.updated_at,
    )


@router.get("/search")
async def search(
    request: Request,
    principal: Principal = require(Permission.FILES_READ),
    q: str = Query(min_length=1, max_length=MAX_QUERY_CHARS),
    top_k: int = Query(default=5, ge=1, le=MAX_TOP_K),
) -> SearchOut:
    hits = await _retrieval(request).searcher.search(principal, q, top_k)
    results = [
        ExcerptOut(
            number=number,
            file_id=hit.file_id,
            file_name=hit.file_name,
            locator=hit.locator,
            citation=f"[{number}] {hit.file_name}, {hit.locator}",
            text=hit.text,
            score=hit.score,
        )
        for number, hit in enumerate(hits, start=1)
    ]
    await services_of(request).audit.record(
        AuditEvent(
            type="retrieval.query",
            tenant_id=principal.tenant_id,
            actor=actor_of(principal),
            outcome="success",
            source_address=request.client.host if request.client else None,
            data={
                "via": "api",
                "query_sha256": digest(q),
                "top_k": top_k,
                "returned": [{"file_id": h.file_id, "chunk_id": h.chunk_id} for h in hits],
            },
        )
    )
    return SearchOut(query=q, results=results)
