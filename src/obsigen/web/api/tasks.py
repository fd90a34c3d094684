"""Failed background tasks: ``/api/v1/tasks/dead-letters`` (tenant admins, with MFA).

A tenant admin sees and re-sends only its own tenant's dead letters; another tenant's id
answers 404 like a missing one.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from obsigen.audit.events import AuditEvent, actor_of
from obsigen.authz.permissions import Permission
from obsigen.authz.principal import Principal
from obsigen.db.tasks_models import TaskDeadLetter
from obsigen.errors import Unavailable
from obsigen.tasks.dead_letters import access_dead_letter_by_id, list_dead_letters, mark_retried
from obsigen.web.auth import require, services_of

router = APIRouter(prefix="/api/v1/tasks", tags=["tasks"])


class DeadLetterOut(BaseModel):
    id: str
    task_id: str
    task: str
    # The task's keyword arguments: identifiers (tenant, file), never content.
    arguments: dict[str, Any]
    error: str
    attempts: int
    status: str
    created_at: datetime
    retried_at: datetime | None
    retry_task_id: str | None


def _out(row: TaskDeadLetter) -> DeadLetterOut:
    return DeadLetterOut(
        id=row.id,
        task_id=row.task_id,
        task=row.task_name,
        arguments=json.loads(row.kwargs),
        error=row.error,
        attempts=row.attempts,
        status=row.status,
        created_at=row.created_at,
        retried_at=row.retried_at,
        retry_task_id=row.retry_task_id,
    )


@router.get("/dead-letters")
async def dead_letters(
    request: Request,
    principal: Principal = require(Permission.TASKS_MANAGE),
    status: Literal["dead", "retried"] | None = Query(default="dead"),
    limit: int = Query(default=50, ge=1, le=200),
) -> list[DeadLetterOut]:
    async with services_of(request).sessions() as session:
        rows = await list_dead_letters(session, principal.tenant_id, status, limit)
    return [_out(row) for row in rows]


@router.post("/dead-letters/{letter_id}/retry", status_code=202)
async def retry(
    letter_id: str,
    request: Request,
    principal: Principal = require(Permission.TASKS_MANAGE),
) -> DeadLetterOut:
    services = services_of(request)
    queue = services.tasks
    if queue is None:
        raise Unavailable("background tasks are not configured here")
    async with services.sessions.begin() as session:
        # Locked so two admins pressing retry send one task.
        row = await access_dead_letter_by_id(
            session, principal.tenant_id, letter_id, for_update=True
        )
        if row.status == "dead":
            arguments: dict[str, Any] = json.loads(row.kwargs)
            task_id = await queue.kick(row.task_name, **arguments)
        else:
            task_id = ""
        # Raises AlreadyRetried (409) when it was sent before.
        mark_retried(row, task_id)
        out = _out(row)
    await services.audit.record(
        AuditEvent(
            type="admin.change",
            tenant_id=principal.tenant_id,
            actor=actor_of(principal),
            outcome="success",
            data={
                "target": "task_dead_letter",
                "id": row.id,
                "task": row.task_name,
                "retry_task_id": task_id,
            },
        )
    )
    return out
