"""``/api/v1/files``: upload (streamed multipart), list, metadata, download and delete.

Files are private to whoever uploaded them (obsigen/files/access.py). Every upload, refused
or accepted, every download and every deletion is audited.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from sqlalchemy import delete as sql_delete
from starlette.exceptions import HTTPException

from obsigen.audit.events import AuditEvent, Outcome, actor_of
from obsigen.authz.permissions import Permission
from obsigen.authz.principal import Principal
from obsigen.db.files_models import StoredFile
from obsigen.errors import ObsigenError
from obsigen.files.access import access_file, list_files
from obsigen.files.errors import UploadTooLarge
from obsigen.files.multipart_stream import MultipartFileStream, boundary_of
from obsigen.files.stores import ObjectKey
from obsigen.files.uploads import UploadLimits, store_upload
from obsigen.retrieval.service import retrieval_of
from obsigen.web.auth import require, services_of
from obsigen.web.downloads import stored_object_response

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1/files", tags=["files"])

FILE_FIELD = "file"
# Room for the multipart framing and small fields around the file itself.
MULTIPART_OVERHEAD = 64 * 1024


class FileOut(BaseModel):
    id: str
    name: str
    content_type: str
    size: int
    sha256: str
    created_at: datetime


def _out(row: StoredFile) -> FileOut:
    return FileOut.model_validate(row, from_attributes=True)


async def _audit(
    request: Request,
    principal: Principal,
    type_: str,
    outcome: Outcome,
    file_id: str | None,
    data: dict[str, Any],
) -> None:
    await services_of(request).audit.record(
        AuditEvent(
            type=type_,
            tenant_id=principal.tenant_id,
            actor=actor_of(principal),
            outcome=outcome,
            source_address=request.client.host if request.client else None,
            target={"kind": "file", "id": file_id} if file_id else None,
            data=data,
        )
    )


@router.post("", status_code=201)
async def upload(
    request: Request, principal: Principal = require(Permission.FILES_WRITE)
) -> FileOut:
    services = services_of(request)
    limits = UploadLimits.for_tenant(services.settings.files, principal.tenant_id)
    boundary = boundary_of(request.headers.get("content-type", ""))
    if boundary is None:
        raise HTTPException(415, "send the file as multipart/form-data in a part named 'file'")
    filename = ""
    try:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limits.max_bytes + MULTIPART_OVERHEAD:
            # Refused before reading a byte; the streaming check below catches liars.
            raise UploadTooLarge(f"the file exceeds the upload limit of {limits.max_bytes} bytes")
        body = MultipartFileStream(request.stream(), boundary)
        filename = await body.find_file(FILE_FIELD)
        row = await store_upload(
            sessions=services.sessions,
            store=services_of(request).objects,
            principal=principal,
            filename=filename,
            chunks=body.data(),
            limits=limits,
            scratch_dir=services.settings.paths.data_dir / "tmp",
        )
    except ObsigenError as exc:
        await _audit(
            request,
            principal,
            "file.upload",
            "failure",
            None,
            {"name": filename[:255], "reason": exc.type_slug, "detail": exc.detail[:300]},
        )
        raise
    await _audit(
        request,
        principal,
        "file.upload",
        "success",
        row.id,
        {"name": row.name, "size": row.size, "sha256": row.sha256, "type": row.content_type},
    )
    retrieval = retrieval_of(services)
    if retrieval is not None:
        # Indexed in the background; GET /api/v1/files/{id}/ingestion shows the progress.
        try:
            await retrieval.enqueue(row.tenant_id, row.id)
        except Exception:  # the upload stands; the file shows as not indexed ("none")
            log.exception("could not queue file %s for indexing", row.id)
    return _out(row)


@router.get("")
async def list_(
    request: Request,
    principal: Principal = require(Permission.FILES_READ),
    limit: int = Query(default=50, ge=1, le=200),
    before: str | None = Query(default=None, max_length=32),
) -> list[FileOut]:
    async with services_of(request).sessions() as session:
        rows = await list_files(session, principal, limit, before)
    return [_out(row) for row in rows]


@router.get("/{file_id}")
async def get(
    file_id: str, request: Request, principal: Principal = require(Permission.FILES_READ)
) -> FileOut:
    async with services_of(request).sessions() as session:
        return _out(await access_file(session, principal, file_id))


@router.get("/{file_id}/content")
async def download(
    file_id: str, request: Request, principal: Principal = require(Permission.FILES_READ)
) -> StreamingResponse:
    async with services_of(request).sessions() as session:
        row = await access_file(session, principal, file_id)
    stream = await services_of(request).objects.get_stream(ObjectKey.parse(row.object_key))
    await _audit(
        request,
        principal,
        "file.download",
        "success",
        row.id,
        {"name": row.name, "size": row.size, "sha256": row.sha256},
    )
    return stored_object_response(
        stream, name=row.name, content_type=row.content_type, size=row.size
    )


@router.delete("/{file_id}", status_code=204)
async def delete(
    file_id: str, request: Request, principal: Principal = require(Permission.FILES_WRITE)
) -> Response:
    services = services_of(request)
    async with services.sessions() as session:
        row = await access_file(session, principal, file_id)
    # The object first: should that fail, the row stays and the delete can be retried.
    await services_of(request).objects.delete(ObjectKey.parse(row.object_key))
    async with services.sessions.begin() as session:
        await session.execute(
            sql_delete(StoredFile).where(
                StoredFile.tenant_id == principal.tenant_id, StoredFile.id == row.id
            )
        )
    await _audit(
        request,
        principal,
        "file.delete",
        "success",
        row.id,
        {"name": row.name, "size": row.size, "sha256": row.sha256},
    )
    return Response(status_code=204)
