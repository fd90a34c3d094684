"""Dead letters: tasks that failed every attempt, kept in the database for an operator.

Recorded by the retry middleware after the last attempt; listed and re-sent through
``/api/v1/tasks/dead-letters`` (tenant admins, their tenant only).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from obsigen.db.base import utcnow
from obsigen.db.tasks_models import TaskDeadLetter
from obsigen.errors import Conflict, NotFound

MAX_ERROR_CHARS = 2000


class AlreadyRetried(Conflict):
    type_slug = "dead-letter-retried"
    title = "This dead letter was already sent again"


def describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text[:MAX_ERROR_CHARS]


async def record_dead_letter(
    sessions: async_sessionmaker[AsyncSession],
    *,
    task_id: str,
    task_name: str,
    args: Sequence[Any],
    kwargs: dict[str, Any],
    error: str,
    attempts: int,
) -> None:
    tenant = kwargs.get("tenant_id")
    row = TaskDeadLetter(
        task_id=task_id,
        tenant_id=tenant if isinstance(tenant, str) else None,
        task_name=task_name,
        args=json.dumps(list(args)),
        kwargs=json.dumps(kwargs),
        error=error[:MAX_ERROR_CHARS],
        attempts=attempts,
    )
    # The last attempt of a task redelivered after a crash may end twice: one record.
    with contextlib.suppress(IntegrityError):
        async with sessions.begin() as session:
            session.add(row)


async def list_dead_letters(
    session: AsyncSession, tenant_id: str, status: str | None, limit: int
) -> Sequence[TaskDeadLetter]:
    query = select(TaskDeadLetter).where(TaskDeadLetter.tenant_id == tenant_id)
    if status is not None:
        query = query.where(TaskDeadLetter.status == status)
    query = query.order_by(TaskDeadLetter.created_at.desc(), TaskDeadLetter.id).limit(limit)
    return (await session.scalars(query)).all()


async def access_dead_letter_by_id(
    session: AsyncSession, tenant_id: str, letter_id: str, *, for_update: bool = False
) -> TaskDeadLetter:
    query = select(TaskDeadLetter).where(
        TaskDeadLetter.id == letter_id,
        TaskDeadLetter.tenant_id == tenant_id,
    )
    if for_update:
        query = query.with_for_update()
    row = await session.scalar(query)
    if row is None:
        # The same answer for another tenant's letter as for a missing one.
        raise NotFound("no such dead letter")
    return row


def mark_retried(row: TaskDeadLetter, retry_task_id: str) -> None:
    if row.status != "dead":
        raise AlreadyRetried(f"sent again as task {row.retry_task_id}")
    row.status = "retried"
    row.retried_at = utcnow()
    row.retry_task_id = retry_task_id
