"""Background tasks that failed for good: the dead-letter records (docs/tasks.md).

``tenant_id`` is NULL for platform work that belongs to no tenant (none is queued today); a
tenant admin sees only the rows of their tenant. No foreign key to ``tenants``: a dead letter
of an erased tenant is a record of what was not done and is purged with the tenant's other
rows by retention, not by a cascade.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from obsigen.db.base import Base, IdColumn, LongText, UTCDateTime, new_id, utcnow


class TaskDeadLetter(Base):
    """A task that failed every attempt. ``status``: ``dead`` (waiting for an operator) or
    ``retried`` (sent again as ``retry_task_id``)."""

    __tablename__ = "task_dead_letters"
    __table_args__ = (Index("ix_task_dead_letters_tenant_created", "tenant_id", "created_at"),)

    id: Mapped[str] = mapped_column(IdColumn, primary_key=True, default=new_id)
    # Unique: the last attempt of a task redelivered after a crash records it once.
    task_id: Mapped[str] = mapped_column(String(64), unique=True)
    tenant_id: Mapped[str | None] = mapped_column(IdColumn, default=None)
    task_name: Mapped[str] = mapped_column(String(128))
    # JSON of the task's arguments: identifiers only, never tenant content.
    args: Mapped[str] = mapped_column(LongText)
    kwargs: Mapped[str] = mapped_column(LongText)
    error: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="dead")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    retried_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    retry_task_id: Mapped[str | None] = mapped_column(String(64), default=None)
