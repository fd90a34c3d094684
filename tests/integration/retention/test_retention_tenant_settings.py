"""The purge follows a tenant's stored retention choice (``tenant_settings``), on SQLite and
MariaDB: shorter than the default removes more, longer keeps more, an operator override still
wins, and the store refuses what the operator's limits or the actor's permissions do not allow."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.integration.retention.retention_data import (
    NOW,
    add_conversation,
    days_ago,
    new_tenant,
    row_exists,
)

from obsigen.authz.permissions import Role
from obsigen.authz.principal import Principal
from obsigen.config import RetentionSettings
from obsigen.db.models import Conversation
from obsigen.errors import Conflict, Forbidden, InvalidInput, MfaRequired
from obsigen.retention.purge import Purger
from obsigen.retention.tenant_settings import save_tenant_retention

Sessions = async_sessionmaker[AsyncSession]


def admin(tenant_id: str, *, role: Role = Role.ADMIN, mfa: bool = True) -> Principal:
    return Principal(
        tenant_id=tenant_id, kind="user", id="a" * 32, roles=frozenset({role}), mfa=mfa
    )


async def choose(
    sessions: Sessions, actor: Principal, settings: RetentionSettings, **days: int
) -> None:
    async with sessions.begin() as session:
        await save_tenant_retention(session, actor, settings, days)


async def test_the_purge_uses_each_tenants_stored_choice(sessions: Sessions) -> None:
    settings = RetentionSettings(conversations_days=30)
    shorter_id, shorter = await new_tenant(sessions)
    longer_id, longer = await new_tenant(sessions)
    default_id, default = await new_tenant(sessions)
    ten_days = {
        t: await add_conversation(sessions, t, days_ago(10))
        for t in (shorter_id, longer_id, default_id)
    }
    forty_days = {
        t: await add_conversation(sessions, t, days_ago(40))
        for t in (shorter_id, longer_id, default_id)
    }
    await choose(sessions, admin(shorter_id), settings, conversations_days=7)
    await choose(sessions, admin(longer_id), settings, conversations_days=60)

    purger = Purger(sessions, None, None, settings)
    results = {
        r.tenant_name: r
        for t in (shorter, longer, default)
        for r in await purger.run(tenant=t, now=NOW)
    }

    assert results[shorter].removed["conversations"] == 2
    assert results[longer].removed["conversations"] == 0
    assert results[default].removed["conversations"] == 1
    assert not await row_exists(sessions, Conversation, ten_days[shorter_id])
    assert await row_exists(sessions, Conversation, forty_days[longer_id])
    assert await row_exists(sessions, Conversation, ten_days[default_id])
    assert not await row_exists(sessions, Conversation, forty_days[default_id])


async def test_an_operator_override_beats_the_stored_choice_in_the_purge(
    sessions: Sessions,
) -> None:
    tenant_id, name = await new_tenant(sessions)
    old = await add_conversation(sessions, tenant_id, days_ago(20))
    await choose(sessions, admin(tenant_id), RetentionSettings(), conversations_days=7)
    settings = RetentionSettings(tenant_overrides={name: {"conversations_days": 365}})

    (result,) = await Purger(sessions, None, None, settings).run(tenant=name, now=NOW)

    assert result.removed["conversations"] == 0
    assert await row_exists(sessions, Conversation, old)


@pytest.mark.parametrize(
    ("actor", "days", "error"),
    [
        ({"role": Role.AUDITOR}, {"files_days": 30}, Forbidden),
        ({"mfa": False}, {"files_days": 30}, MfaRequired),
        ({}, {"audit_days": 100}, InvalidInput),
        ({}, {"files_days": 5000}, InvalidInput),
        ({}, {"backups_days": 5}, InvalidInput),
    ],
)
async def test_refused_choices_store_nothing(
    sessions: Sessions, actor: dict[str, object], days: dict[str, int], error: type[Exception]
) -> None:
    tenant_id, name = await new_tenant(sessions)
    with pytest.raises(error):
        await choose(sessions, admin(tenant_id, **actor), RetentionSettings(), **days)  # type: ignore[arg-type]
    old = await add_conversation(sessions, tenant_id, days_ago(40))
    (result,) = await Purger(sessions, None, None, RetentionSettings()).run(tenant=name, now=NOW)
    assert result.removed["conversations"] == 0
    assert await row_exists(sessions, Conversation, old)


async def test_a_pinned_period_is_refused(sessions: Sessions) -> None:
    tenant_id, _ = await new_tenant(sessions)
    settings = RetentionSettings(tenant_overrides={tenant_id: {"audit_days": 800}})
    with pytest.raises(Conflict):
        await choose(sessions, admin(tenant_id), settings, audit_days=300)
    await choose(sessions, admin(tenant_id), settings, files_days=300)
