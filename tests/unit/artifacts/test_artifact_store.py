"""Saving an artifact never leaves an object without a row: a failed insert removes it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from obsigen.artifacts.store import ArtifactStore
from obsigen.authz.permissions import Role
from obsigen.authz.principal import Principal
from obsigen.files.local_store import LocalObjectStore

PRINCIPAL = Principal("t1", "user", "u1", frozenset({Role.MEMBER}))


class DatabaseDown:
    def begin(self) -> Any:
        raise ConnectionError("database down")


async def test_a_failed_row_insert_removes_the_object(tmp_path: Path) -> None:
    objects = LocalObjectStore(tmp_path / "objects")
    store = ArtifactStore(cast(async_sessionmaker[AsyncSession], DatabaseDown()), objects, None)

    with pytest.raises(ConnectionError):
        await store.save(
            PRINCIPAL, kind="chart", name="c.png", content_type="image/png", data=b"x" * 10
        )

    tenant_dir = tmp_path / "objects" / "t1"
    assert tenant_dir.is_dir()  # the object was written ...
    assert list(tenant_dir.iterdir()) == []  # ... and removed again
