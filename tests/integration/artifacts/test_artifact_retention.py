"""Retention on real databases: artifacts older than ``artifacts_days`` lose their object and
their row, newer ones and other tenants' stay, a dry run only counts, and the purge is audited."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.integration.retention.retention_data import (
    NOW,
    ListSink,
    days_ago,
    new_tenant,
    row_exists,
)

from obsigen.artifacts.store import ArtifactStore
from obsigen.audit.recorder import AuditRecorder
from obsigen.authz.permissions import Role
from obsigen.authz.principal import Principal
from obsigen.config import RetentionSettings
from obsigen.db.artifacts_models import StoredArtifact
from obsigen.files.local_store import LocalObjectStore
from obsigen.files.stores import ObjectKey
from obsigen.retention.purge import Purger

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
def store(tmp_path: Path) -> LocalObjectStore:
    return LocalObjectStore(tmp_path / "objects")


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[AuditRecorder, ListSink]]:
    sink = ListSink()
    recorder = AuditRecorder([sink])
    yield recorder, sink
    await recorder.aclose()


async def artifact(
    sessions: Sessions, store: LocalObjectStore, tenant_id: str, created: datetime
) -> StoredArtifact:
    principal = Principal(tenant_id, "user", "u1", frozenset({Role.MEMBER}))
    row = await ArtifactStore(sessions, store, None).save(
        principal, kind="chart", name="c.png", content_type="image/png", data=b"\x89PNG..."
    )
    async with sessions.begin() as session:
        await session.execute(
            update(StoredArtifact).where(StoredArtifact.id == row.id).values(created_at=created)
        )
    return row


def purger(sessions: Sessions, store: Any, recorder: AuditRecorder | None) -> Purger:
    settings = RetentionSettings(conversations_days=30, files_days=30, artifacts_days=7)
    return Purger(sessions, store, recorder, settings)


def stored(store: LocalObjectStore, row: StoredArtifact) -> bool:
    return store.path_of(ObjectKey.parse(row.object_key)).exists()


async def test_old_artifacts_go_with_their_objects_and_the_purge_is_audited(
    sessions: Sessions,
    store: LocalObjectStore,
    recorder: tuple[AuditRecorder, ListSink],
) -> None:
    tenant_id, name = await new_tenant(sessions)
    other_id, _ = await new_tenant(sessions)
    old = await artifact(sessions, store, tenant_id, days_ago(8))
    recent = await artifact(sessions, store, tenant_id, days_ago(6))
    other_old = await artifact(sessions, store, other_id, days_ago(30))

    (result,) = await purger(sessions, store, recorder[0]).run(tenant=name, now=NOW)

    assert result.removed["artifacts"] == 1
    assert not await row_exists(sessions, StoredArtifact, old.id)
    assert not stored(store, old)
    assert await row_exists(sessions, StoredArtifact, recent.id)
    assert stored(store, recent)
    assert await row_exists(sessions, StoredArtifact, other_old.id)
    assert stored(store, other_old)
    (event,) = recorder[1].events
    assert (event.type, event.tenant_id, event.outcome) == ("retention.purge", tenant_id, "success")
    assert event.data["removed"]["artifacts"] == 1
    assert old.id not in str(event.data)  # counts only, never ids


async def test_a_dry_run_counts_and_keeps_everything(
    sessions: Sessions, store: LocalObjectStore
) -> None:
    tenant_id, name = await new_tenant(sessions)
    old = await artifact(sessions, store, tenant_id, days_ago(10))

    (result,) = await purger(sessions, store, None).run(tenant=name, dry_run=True, now=NOW)

    assert result.removed["artifacts"] == 1
    assert await row_exists(sessions, StoredArtifact, old.id)
    assert stored(store, old)


class RefusingStore(LocalObjectStore):
    async def delete(self, key: ObjectKey) -> None:
        raise OSError("store down")


async def test_a_store_that_refuses_keeps_the_row_for_the_next_run(
    sessions: Sessions, tmp_path: Path, recorder: tuple[AuditRecorder, ListSink]
) -> None:
    store = RefusingStore(tmp_path / "objects")
    tenant_id, name = await new_tenant(sessions)
    old = await artifact(sessions, store, tenant_id, days_ago(10))

    (result,) = await purger(sessions, store, recorder[0]).run(tenant=name, now=NOW)

    assert result.removed["artifacts"] == 0
    assert result.failed == {"artifacts": 1}
    assert await row_exists(sessions, StoredArtifact, old.id)
    assert recorder[1].events[-1].outcome == "failure"
