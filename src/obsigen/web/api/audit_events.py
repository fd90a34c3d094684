"""``GET /api/v1/audit/events``: search the tenant's audit trail (auditors and admins, MFA).

Reads the hash-chained table itself, newest first, a page at a time (``before_seq`` is the
cursor). Each search is itself recorded (``audit.export``, kind ``search``): who looked at the
record of what happened is part of the record.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel
from sqlalchemy import select

from obsigen.audit.events import EVENT_CLASSES, AuditEvent, actor_of
from obsigen.authz.permissions import Permission
from obsigen.authz.principal import Principal
from obsigen.db.models import AuditEventRecord
from obsigen.errors import InvalidInput
from obsigen.web.auth import require, services_of

router = APIRouter(prefix="/api/v1/audit")

_ID = r"^[A-Za-z0-9_-]{1,64}$"


class AuditPage(BaseModel):
    events: list[dict[str, Any]]
    # Pass as before_seq for the next (older) page; null when there is none.
    next_before_seq: int | None


@router.get("/events")
async def search_events(
    request: Request,
    principal: Principal = require(Permission.AUDIT_READ),
    type: Annotated[str | None, Query(max_length=64)] = None,
    outcome: Annotated[str | None, Query(pattern=r"^(success|failure|denied)$")] = None,
    actor_id: Annotated[str | None, Query(pattern=_ID)] = None,
    interaction_id: Annotated[str | None, Query(pattern=_ID)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before_seq: Annotated[int | None, Query(ge=1)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> AuditPage:
    if type is not None and type not in EVENT_CLASSES:
        raise InvalidInput(f"unknown event type {type!r}")
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise InvalidInput(f"{name} needs a time zone (e.g. 2026-11-26T10:00:00Z)")
    query = select(AuditEventRecord.seq, AuditEventRecord.record).where(
        AuditEventRecord.tenant_id == principal.tenant_id
    )
    if type is not None:
        query = query.where(AuditEventRecord.event_type == type)
    if outcome is not None:
        query = query.where(AuditEventRecord.outcome == outcome)
    if interaction_id is not None:
        query = query.where(AuditEventRecord.interaction_id == interaction_id)
    if since is not None:
        query = query.where(AuditEventRecord.time >= since)
    if until is not None:
        query = query.where(AuditEventRecord.time < until)
    if before_seq is not None:
        query = query.where(AuditEventRecord.seq < before_seq)
    if actor_id is not None:
        # The record is canonical JSON (RFC 8785: keys sorted, no spaces), so the actor
        # object always starts with exactly this text; the id pattern excludes wildcards.
        query = query.where(AuditEventRecord.record.contains(f'"actor":{{"id":"{actor_id}"'))
    query = query.order_by(AuditEventRecord.seq.desc()).limit(limit + 1)
    services = services_of(request)
    async with services.sessions() as session:
        rows = (await session.execute(query)).all()
    page = rows[:limit]
    events = [{"seq": row.seq, **json.loads(row.record)} for row in page]
    filters = {
        key: value
        for key, value in {
            "type": type,
            "outcome": outcome,
            "actor_id": actor_id,
            "interaction_id": interaction_id,
            "since": since.isoformat() if since else None,
            "until": until.isoformat() if until else None,
            "before_seq": before_seq,
        }.items()
        if value is not None
    }
    await services.audit.record(
        AuditEvent(
            type="audit.export",
            tenant_id=principal.tenant_id,
            actor=actor_of(principal),
            outcome="success",
            source_address=request.client.host if request.client else None,
            data={"kind": "search", "filters": filters, "count": len(events)},
        )
    )
    return AuditPage(
        events=events, next_before_seq=page[-1].seq if len(rows) > limit and page else None
    )
