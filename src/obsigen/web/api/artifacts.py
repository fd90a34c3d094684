"""``/api/v1/artifacts``: what the platform made for a user (slides, charts, sandbox outputs).

Artifacts are private to the principal they were made for (obsigen/artifacts/access.py):
another user's or another tenant's id is answered exactly like a missing one. Downloads are
served as attachments that no browser renders or sniffs. Downloads and deletions are audited
(``file.download`` / ``file.delete`` with target kind ``artifact``); creation is audited
where the artifact is made (``artifact.create``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from obsigen.artifacts.access import access_artifact, list_artifacts
from obsigen.artifacts.store import ArtifactStore
from obsigen.audit.events import AuditEvent, actor_of
from obsigen.authz.permissions import Permission
from obsigen.authz.principal import Principal
from obsigen.db.artifacts_models import StoredArtifact
from obsigen.files.stores import ObjectKey
from obsigen.web.auth import require, services_of
from obsigen.web.downloads import stored_object_response

router = APIRouter(prefix="/api/v1/artifacts", tags=["artifacts"])


class ArtifactOut(BaseModel):
    id: str
    kind: str
    name: str
    content_type: str
    size: int
    sha256: str
    conversation_id: str | None
    interaction_id: str | None
    created_at: datetime


def _out(row: StoredArtifact) -> ArtifactOut:
    return ArtifactOut.model_validate(row, from_attributes=True)


async def _audit(request: Request, principal: Principal, type_: str, row: StoredArtifact) -> None:
    data: dict[str, Any] = {"name": row.name, "size": row.size, "sha256": row.sha256}
    await services_of(request).audit.record(
        AuditEvent(
            type=type_,
            tenant_id=principal.tenant_id,
            actor=actor_of(principal),
            outcome="success",
            source_address=request.client.host if request.client else None,
            target={"kind": "artifact", "id": row.id},
            data=data,
        )
    )


@router.get("")
async def list_(
    request: Request,
    principal: Principal = require(Permission.FILES_READ),
    limit: int = Query(default=50, ge=1, le=200),
    before: str | None = Query(default=None, max_length=32),
) -> list[ArtifactOut]:
    async with services_of(request).sessions() as session:
        rows = await list_artifacts(session, principal, limit, before)
    return [_out(row) for row in rows]


@router.get("/{artifact_id}")
async def download(
    artifact_id: str, request: Request, principal: Principal = require(Permission.FILES_READ)
) -> StreamingResponse:
    services = services_of(request)
    async with services.sessions() as session:
        row = await access_artifact(session, principal, artifact_id)
    stream = await services.objects.get_stream(ObjectKey.parse(row.object_key))
    await _audit(request, principal, "file.download", row)
    return stored_object_response(
        stream, name=row.name, content_type=row.content_type, size=row.size
    )


@router.delete("/{artifact_id}", status_code=204)
async def delete(
    artifact_id: str, request: Request, principal: Principal = require(Permission.FILES_WRITE)
) -> Response:
    services = services_of(request)
    async with services.sessions() as session:
        row = await access_artifact(session, principal, artifact_id)
    await ArtifactStore(services.sessions, services.objects, services.audit).delete(row)
    await _audit(request, principal, "file.delete", row)
    return Response(status_code=204)
