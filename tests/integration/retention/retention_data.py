"""Builders for retention tests: tenants with conversations and files of a chosen age."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from obsigen.audit.events import AuditEvent
from obsigen.db.base import new_id
from obsigen.db.files_models import StoredFile
from obsigen.db.models import Conversation, Message, ToolCall
from obsigen.files.stores import ObjectKey, ObjectStore
from obsigen.identity.tenants import create_tenant

NOW = datetime.now(UTC)


def days_ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


async def new_tenant(sessions: async_sessionmaker[AsyncSession]) -> tuple[str, str]:
    name = f"ret-{uuid.uuid4().hex[:10]}"
    async with sessions.begin() as session:
        tenant = await create_tenant(session, name)
        return tenant.id, name


async def add_conversation(
    sessions: async_sessionmaker[AsyncSession],
    tenant_id: str,
    updated: datetime,
    messages: int = 3,
    tool_calls: int = 2,
) -> str:
    conversation_id = new_id()
    async with sessions.begin() as session:
        session.add(
            Conversation(
                id=conversation_id,
                tenant_id=tenant_id,
                owner_kind="user",
                owner_id=new_id(),
                title="secret plans",
                created_at=updated,
                updated_at=updated,
            )
        )
        await session.flush()
        for seq in range(messages):
            session.add(
                Message(
                    tenant_id=tenant_id,
                    conversation_id=conversation_id,
                    seq=seq,
                    role="user",
                    content=f"message {seq}",
                )
            )
        for n in range(tool_calls):
            session.add(
                ToolCall(
                    tenant_id=tenant_id,
                    conversation_id=conversation_id,
                    interaction_id=new_id(),
                    call_id=f"call-{n}",
                    name="run_python",
                    executed_by="server",
                )
            )
    return conversation_id


async def add_file(
    sessions: async_sessionmaker[AsyncSession],
    store: ObjectStore,
    tenant_id: str,
    created: datetime,
    *,
    status: str = "ready",
    owner_kind: str = "user",
) -> str:
    file_id = new_id()
    key = ObjectKey(tenant_id, file_id)

    async def body() -> Any:
        yield b"personal data"

    await store.put_stream(key, body())
    async with sessions.begin() as session:
        session.add(
            StoredFile(
                id=file_id,
                tenant_id=tenant_id,
                owner_kind=owner_kind,
                owner_id=new_id(),
                name="cv.pdf",
                object_key=str(key),
                status=status,
                created_at=created,
            )
        )
    return file_id


async def count(sessions: async_sessionmaker[AsyncSession], model: Any, *where: Any) -> int:
    async with sessions.begin() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def row_exists(sessions: async_sessionmaker[AsyncSession], model: Any, row_id: str) -> bool:
    async with sessions.begin() as session:
        return await session.get(model, row_id) is not None


@dataclass
class ListSink:
    """Keeps events in memory, as an audit sink would persist them."""

    name: str = "list"
    events: list[AuditEvent] = field(default_factory=list)

    async def emit(self, event: AuditEvent) -> None:
        self.events.append(event)

    async def aclose(self) -> None:
        return None
