"""The purge on real databases (SQLite and MariaDB): what expires goes with its children and
objects, what is recent stays, per-tenant overrides, store failures, dry runs and audit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.integration.retention.retention_data import (
    NOW,
    ListSink,
    add_conversation,
    add_file,
    count,
    days_ago,
    new_tenant,
    row_exists,
)

from obsigen.audit.recorder import AuditRecorder
from obsigen.config import RetentionSettings
from obsigen.db.files_models import StoredFile
from obsigen.db.models import Conversation, Message, ToolCall
from obsigen.files.local_store import LocalObjectStore
from obsigen.files.stores import ObjectKey
from obsigen.retention.purge import Purger, TenantPurge, UnknownTenant

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
def store(tmp_path: Path) -> LocalObjectStore:
    return LocalObjectStore(tmp_path / "objects")


@pytest.fixture
def sink() -> ListSink:
    return ListSink()


@pytest.fixture
async def recorder(sink: ListSink) -> AsyncIterator[AuditRecorder]:
    recorder = AuditRecorder([sink])
    yield recorder
    await recorder.aclose()


def purger(
    sessions: Sessions, store: Any, recorder: AuditRecorder | None, **settings: Any
) -> Purger:
    values: dict[str, Any] = {"conversations_days": 30, "files_days": 30, "artifacts_days": 7}
    values.update(settings)
    return Purger(sessions, store, recorder, RetentionSettings(**values))


async def purge_one(p: Purger, tenant: str, *, dry_run: bool = False) -> TenantPurge:
    (result,) = await p.run(tenant=tenant, dry_run=dry_run, now=NOW)
    return result


def exists(store: LocalObjectStore, tenant_id: str, file_id: str) -> bool:
    return store.path_of(ObjectKey(tenant_id, file_id)).exists()


async def test_an_old_conversation_goes_with_its_messages_and_tool_calls(
    sessions: Sessions, store: LocalObjectStore, recorder: AuditRecorder
) -> None:
    tenant_id, name = await new_tenant(sessions)
    old = await add_conversation(sessions, tenant_id, days_ago(31), messages=3, tool_calls=2)
    recent = await add_conversation(sessions, tenant_id, days_ago(29), messages=2, tool_calls=1)

    result = await purge_one(purger(sessions, store, recorder), name)

    assert result.removed["conversations"] == 1
    assert result.removed["messages"] == 3
    assert result.removed["tool_calls"] == 2
    assert not await row_exists(sessions, Conversation, old)
    assert await count(sessions, Message, Message.conversation_id == old) == 0
    assert await count(sessions, ToolCall, ToolCall.conversation_id == old) == 0
    assert await row_exists(sessions, Conversation, recent)
    assert await count(sessions, Message, Message.conversation_id == recent) == 2
    assert await count(sessions, ToolCall, ToolCall.conversation_id == recent) == 1


async def test_conversations_go_in_bounded_batches(
    sessions: Sessions, store: LocalObjectStore, recorder: AuditRecorder
) -> None:
    tenant_id, name = await new_tenant(sessions)
    for _ in range(5):
        await add_conversation(sessions, tenant_id, days_ago(40), messages=1, tool_calls=0)

    result = await purge_one(purger(sessions, store, recorder, batch_size=2), name)

    assert result.removed["conversations"] == 5
    assert result.removed["messages"] == 5
    assert await count(sessions, Conversation, Conversation.tenant_id == tenant_id) == 0


async def test_a_tenant_override_applies_to_that_tenant_only(
    sessions: Sessions, store: LocalObjectStore, recorder: AuditRecorder
) -> None:
    short_id, short_name = await new_tenant(sessions)
    other_id, _ = await new_tenant(sessions)
    by_id_id, _ = await new_tenant(sessions)
    short = await add_conversation(sessions, short_id, days_ago(10))
    other = await add_conversation(sessions, other_id, days_ago(10))
    by_id = await add_conversation(sessions, by_id_id, days_ago(10))
    short_file = await add_file(sessions, store, short_id, days_ago(10))
    other_file = await add_file(sessions, store, other_id, days_ago(10))
    p = purger(
        sessions,
        store,
        recorder,
        tenant_overrides={
            short_name: {"conversations_days": 7, "files_days": 5},
            by_id_id: {"conversations_days": 7},
        },
    )

    for tenant in (short_id, other_id, by_id_id):
        await purge_one(p, tenant)

    assert not await row_exists(sessions, Conversation, short)
    assert not await row_exists(sessions, StoredFile, short_file)
    assert not exists(store, short_id, short_file)
    assert not await row_exists(sessions, Conversation, by_id)
    assert await row_exists(sessions, Conversation, other)
    assert await row_exists(sessions, StoredFile, other_file)
    assert exists(store, other_id, other_file)


async def test_old_files_lose_their_object_then_their_row(
    sessions: Sessions, store: LocalObjectStore, recorder: AuditRecorder
) -> None:
    tenant_id, name = await new_tenant(sessions)
    old = await add_file(sessions, store, tenant_id, days_ago(31))
    recent = await add_file(sessions, store, tenant_id, days_ago(29))
    old_artifact = await add_file(sessions, store, tenant_id, days_ago(8), owner_kind="artifact")
    new_artifact = await add_file(sessions, store, tenant_id, days_ago(6), owner_kind="artifact")
    crashed = await add_file(sessions, store, tenant_id, days_ago(1.5), status="pending")
    uploading = await add_file(sessions, store, tenant_id, days_ago(0.01), status="pending")

    result = await purge_one(purger(sessions, store, recorder), name)

    assert result.removed["files"] == 1
    assert result.removed["artifacts"] == 1
    assert result.removed["pending_files"] == 1
    assert result.failed == {}
    for gone in (old, old_artifact, crashed):
        assert not exists(store, tenant_id, gone)
        assert not await row_exists(sessions, StoredFile, gone)
    for kept in (recent, new_artifact, uploading):
        assert exists(store, tenant_id, kept)
        assert await row_exists(sessions, StoredFile, kept)


class FailingStore(LocalObjectStore):
    """A store that refuses to delete some objects, as an unreachable S3 would."""

    def __init__(self, root: Path, refuse: set[str]) -> None:
        super().__init__(root)
        self.refuse = refuse

    async def delete(self, key: ObjectKey) -> None:
        if key.object_id in self.refuse:
            raise OSError("store unavailable")
        await super().delete(key)


async def test_a_store_failure_leaves_the_row_for_the_next_run(
    sessions: Sessions, tmp_path: Path, recorder: AuditRecorder, sink: ListSink
) -> None:
    store = FailingStore(tmp_path / "objects", set())
    tenant_id, name = await new_tenant(sessions)
    stuck = await add_file(sessions, store, tenant_id, days_ago(40))
    fine = await add_file(sessions, store, tenant_id, days_ago(40))
    store.refuse.add(stuck)

    result = await purge_one(purger(sessions, store, recorder, batch_size=1), name)

    assert result.removed["files"] == 1
    assert result.failed == {"files": 1}
    assert await row_exists(sessions, StoredFile, stuck)
    assert exists(store, tenant_id, stuck)
    assert not await row_exists(sessions, StoredFile, fine)
    assert sink.events[-1].outcome == "failure"
    assert sink.events[-1].data["failed"] == {"files": 1}

    store.refuse.clear()
    again = await purge_one(purger(sessions, store, recorder), name)
    assert again.removed["files"] == 1
    assert not await row_exists(sessions, StoredFile, stuck)
    assert not exists(store, tenant_id, stuck)


async def test_a_dry_run_counts_and_deletes_nothing(
    sessions: Sessions, store: LocalObjectStore, recorder: AuditRecorder, sink: ListSink
) -> None:
    tenant_id, name = await new_tenant(sessions)
    conversation = await add_conversation(sessions, tenant_id, days_ago(31), 4, 1)
    await add_conversation(sessions, tenant_id, days_ago(1), 2, 2)
    file_id = await add_file(sessions, store, tenant_id, days_ago(31))
    await add_file(sessions, store, tenant_id, days_ago(3), status="pending")

    result = await purge_one(purger(sessions, store, recorder), name, dry_run=True)

    assert result.dry_run
    assert result.removed == {
        "conversations": 1,
        "messages": 4,
        "tool_calls": 1,
        "files": 1,
        "artifacts": 0,
        "pending_files": 1,
    }
    assert await row_exists(sessions, Conversation, conversation)
    assert await count(sessions, Message, Message.conversation_id == conversation) == 4
    assert await row_exists(sessions, StoredFile, file_id)
    assert exists(store, tenant_id, file_id)
    assert sink.events == []


async def test_each_tenant_purge_is_one_audit_event_with_counts_and_cutoffs(
    sessions: Sessions, store: LocalObjectStore, recorder: AuditRecorder, sink: ListSink
) -> None:
    first_id, first = await new_tenant(sessions)
    second_id, second = await new_tenant(sessions)
    idle_id, idle = await new_tenant(sessions)
    await add_conversation(sessions, first_id, days_ago(31), 2, 1)
    await add_conversation(sessions, first_id, days_ago(32), 1, 0)
    await add_file(sessions, store, first_id, days_ago(31))
    await add_conversation(sessions, second_id, days_ago(31), 1, 0)
    await add_conversation(sessions, idle_id, days_ago(1), 1, 0)

    p = purger(sessions, store, recorder)
    for tenant in (first, second, idle):
        await purge_one(p, tenant)

    events = {event.tenant_id: event for event in sink.events}
    assert len(sink.events) == 2
    assert set(events) == {first_id, second_id}
    event = events[first_id]
    assert event.type == "retention.purge"
    assert event.outcome == "success"
    assert event.actor == {"kind": "system", "id": "retention"}
    assert event.data["scope"] == "data"
    assert event.data["removed"] == {
        "conversations": 2,
        "messages": 3,
        "tool_calls": 1,
        "files": 1,
        "artifacts": 0,
        "pending_files": 0,
    }
    assert event.data["cutoffs"]["conversations"] == days_ago(30).isoformat()
    # Counts and cut-offs only: nothing of what was deleted.
    text = str(event.to_json())
    for content in ("secret plans", "message 0", "cv.pdf"):
        assert content not in text
    assert events[second_id].data["removed"]["conversations"] == 1


async def test_an_unknown_tenant_is_refused(sessions: Sessions, store: LocalObjectStore) -> None:
    with pytest.raises(UnknownTenant):
        await purger(sessions, store, None).run(tenant="no-such-tenant")


async def test_without_an_object_store_files_are_left_alone(
    sessions: Sessions, store: LocalObjectStore
) -> None:
    tenant_id, name = await new_tenant(sessions)
    file_id = await add_file(sessions, store, tenant_id, days_ago(400))

    result = await purge_one(purger(sessions, None, None), name)

    assert result.removed["files"] == 0
    assert await row_exists(sessions, StoredFile, file_id)
