"""API keys in the rotation report, read from a real database (SQLite and MariaDB)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from obsigen.config import Settings
from obsigen.db.models import ApiKey, Tenant
from obsigen.identity.apikeys import create_api_key
from obsigen.secrets.rotation import RotationState, api_key_items, enforce_rotation


async def _key(sessions: Any, lifetime: timedelta) -> ApiKey:
    async with sessions() as session, session.begin():
        tenant = Tenant(name=f"rot-{uuid.uuid4().hex[:10]}")
        session.add(tenant)
        await session.flush()
        created = await create_api_key(session, tenant, "svc", "member", lifetime)
        return created.api_key


async def _items(sessions: Any, settings: Settings, now: Any) -> list[Any]:
    async with sessions() as session:
        return await api_key_items(session, settings, now)


@pytest.mark.parametrize(
    ("fraction", "expected"),
    [(0.0, RotationState.OK), (0.85, RotationState.WARN), (1.10, None)],
)
async def test_api_key_states_at_0_85_and_110_percent(
    sessions: Any, tmp_path: Path, fraction: float, expected: RotationState | None
) -> None:
    settings = Settings(paths={"data_dir": tmp_path})
    key = await _key(sessions, timedelta(days=100))
    assert key.expires_at is not None
    now = key.created_at + timedelta(days=100) * fraction
    mine = [item for item in await _items(sessions, settings, now) if key.id in item.name]
    if expected is RotationState.WARN:
        (item,) = mine
        assert item.state is RotationState.WARN
        assert item.max_days == pytest.approx(100, abs=0.01)
        assert "expires" in item.note
    else:
        # ok keys are summarised; expired ones are refused at authentication, not listed.
        assert mine == []
    enforce_rotation(await _items(sessions, settings, now))  # API keys never block a start


async def test_revoked_keys_are_not_reported(sessions: Any, tmp_path: Path) -> None:
    settings = Settings(paths={"data_dir": tmp_path})
    key = await _key(sessions, timedelta(days=10))
    async with sessions() as session, session.begin():
        await session.execute(
            update(ApiKey).where(ApiKey.id == key.id).values(revoked_at=key.created_at)
        )
    now = key.created_at + timedelta(days=9)
    assert not [item for item in await _items(sessions, settings, now) if key.id in item.name]
