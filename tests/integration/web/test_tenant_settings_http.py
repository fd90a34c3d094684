"""Retention settings and the data map over HTTP, on SQLite and MariaDB, with real logins.

Retention: an auditor reads, an admin changes within ``[retention.tenant_limits]`` (outside:
422; a period an operator override pins: 409), the change is audited with before and after,
and the purge's policy then uses it. The data map: the tenant's own periods, stores named by
kind only (no host, port, path or bucket of the operator's infrastructure, no secret).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from tests.conftest import LoggedIn, Platform, platform_settings, running_platform
from tests.fakes.openai_upstream import FakeUpstream

from obsigen.authz.permissions import Role
from obsigen.db.models import AuditEventRecord
from obsigen.identity.tenants import create_tenant, tenant_by_name
from obsigen.retention.policy import RetentionPolicy

PINNED_TENANT = "pinned-retention"


def _auth(login: LoggedIn) -> dict[str, str]:
    return Platform.auth(login.token)


def _slug(response: Any) -> str:
    return str(response.json().get("type", "")).rsplit("/", 1)[-1]


async def _tenant_id(platform: Platform, name: str) -> str:
    async with platform.services.sessions() as session:
        return (await tenant_by_name(session, name)).id


@pytest.fixture
async def pinned(
    database_url: str,
    upstream_server: tuple[FakeUpstream, str],
    upstream: FakeUpstream,
    tmp_path: Path,
) -> AsyncIterator[Platform]:
    """The platform with an operator override for one tenant and narrower tenant limits."""
    base = platform_settings(tmp_path / "var", database_url, upstream_server[1])
    settings = base.model_copy(
        update={
            "retention": base.retention.model_validate(
                {
                    "tenant_overrides": {PINNED_TENANT: {"audit_days": 730}},
                    "tenant_limits": {"files_days": {"min": 7, "max": 400}},
                }
            )
        }
    )
    async with running_platform(settings, upstream) as running:
        yield running


async def test_an_auditor_reads_the_defaults_and_cannot_change_them(platform: Platform) -> None:
    auditor = await platform.login(role=Role.AUDITOR)

    read = await platform.client.get("/api/v1/retention", headers=_auth(auditor))
    write = await platform.client.put(
        "/api/v1/retention", json={"files_days": 30}, headers=_auth(auditor)
    )

    assert read.status_code == 200, read.text
    files = read.json()["files_days"]
    assert files == {
        "days": 365,
        "source": "default",
        "tenant_value": None,
        "min": 1,
        "max": 1095,
        "locked": False,
    }
    assert read.json()["audit_days"]["min"] == 183
    assert write.status_code == 403
    assert _slug(write) == "forbidden"
    member = await platform.login(auditor.tenant, Role.MEMBER)
    refused = await platform.client.get("/api/v1/retention", headers=_auth(member))
    assert refused.status_code == 403


async def test_an_admin_shortens_and_lengthens_within_the_limits(platform: Platform) -> None:
    admin = await platform.login(role=Role.ADMIN)

    changed = await platform.client.put(
        "/api/v1/retention",
        json={"files_days": 30, "audit_days": 1000, "conversations_days": None},
        headers=_auth(admin),
    )

    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert body["files_days"]["days"] == 30
    assert body["files_days"]["source"] == "tenant"
    assert body["audit_days"]["days"] == 1000
    assert body["conversations_days"]["source"] == "default"
    tenant_id = await _tenant_id(platform, admin.tenant)
    policy = await RetentionPolicy.load(platform.settings.retention, platform.services.sessions)
    rules = policy.for_tenant(tenant_id, admin.tenant)
    assert (rules.files_days, rules.audit_days, rules.conversations_days) == (30, 1000, 365)
    # Other tenants keep the defaults.
    assert policy.for_tenant("another-tenant").files_days == 365
    async with platform.services.sessions() as session:
        records = await session.scalars(
            select(AuditEventRecord.record).where(
                AuditEventRecord.tenant_id == tenant_id,
                AuditEventRecord.event_type == "admin.change",
            )
        )
        (event,) = [json.loads(r) for r in records]
    assert event["data"]["action"] == "retention.update"
    assert event["data"]["before"]["files_days"] is None
    assert event["data"]["after"]["files_days"] == 30
    assert event["data"]["after"]["audit_days"] == 1000


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"audit_days": 182}, "audit_days: between 183"),
        ({"files_days": 1096}, "files_days: between 1 and 1095"),
        ({"artifacts_days": 0}, ""),
        ({"files_days": 30, "backups_days": 3}, ""),
    ],
)
async def test_values_outside_the_limits_are_refused(
    platform: Platform, body: dict[str, int], fragment: str
) -> None:
    admin = await platform.login(role=Role.ADMIN)

    response = await platform.client.put("/api/v1/retention", json=body, headers=_auth(admin))

    assert response.status_code == 422, response.text
    assert _slug(response) == "invalid-input"
    assert fragment in response.json()["detail"]
    after = await platform.client.get("/api/v1/retention", headers=_auth(admin))
    assert all(p["source"] == "default" for p in after.json().values())


async def test_an_admin_without_a_second_factor_must_step_up(platform: Platform) -> None:
    admin = await platform.login(role=Role.ADMIN, mfa=False)
    response = await platform.client.put(
        "/api/v1/retention", json={"files_days": 30}, headers=_auth(admin)
    )
    assert response.status_code == 403
    assert _slug(response) == "mfa-required"


async def test_an_operator_override_wins_and_cannot_be_changed_by_the_tenant(
    pinned: Platform,
) -> None:
    async with pinned.services.sessions.begin() as session:
        await create_tenant(session, PINNED_TENANT)
    admin = await pinned.login(PINNED_TENANT, Role.ADMIN)

    read = await pinned.client.get("/api/v1/retention", headers=_auth(admin))
    locked = await pinned.client.put(
        "/api/v1/retention", json={"audit_days": 200}, headers=_auth(admin)
    )
    narrowed = await pinned.client.put(
        "/api/v1/retention", json={"files_days": 500}, headers=_auth(admin)
    )
    allowed = await pinned.client.put(
        "/api/v1/retention", json={"files_days": 400}, headers=_auth(admin)
    )

    audit = read.json()["audit_days"]
    assert (audit["days"], audit["source"], audit["locked"]) == (730, "operator", True)
    assert locked.status_code == 409
    assert _slug(locked) == "conflict"
    assert narrowed.status_code == 422
    assert "between 7 and 400" in narrowed.json()["detail"]
    assert allowed.status_code == 200, allowed.text
    assert allowed.json()["files_days"]["days"] == 400
    assert allowed.json()["audit_days"]["days"] == 730


async def test_the_data_map_shows_the_tenants_periods_and_no_locations(
    platform: Platform,
) -> None:
    admin = await platform.login(role=Role.ADMIN)
    auditor = await platform.login(admin.tenant, Role.AUDITOR)
    changed = await platform.client.put(
        "/api/v1/retention", json={"audit_days": 250, "files_days": 20}, headers=_auth(admin)
    )
    assert changed.status_code == 200, changed.text

    response = await platform.client.get("/api/v1/admin/doctor", headers=_auth(auditor))

    assert response.status_code == 200, response.text
    rows = {row["data"]: row for row in response.json()["rows"]}
    assert rows["audit events"]["retention"] == "250 days"
    assert rows["uploads"]["retention"] == "20 days"
    assert rows["chat history (conversations, messages)"]["retention"] == "365 days"
    assert set(rows["audit events"]) == {"data", "stored", "region", "retention", "encryption"}
    # The fake model upstream listens on 127.0.0.1:<port>; the database lives in tmp_path
    # (SQLite) or on 127.0.0.1:3306 (MariaDB): none of that reaches a tenant.
    text = response.text
    upstream_port = platform.settings.inference.base_url.rsplit(":", 1)[1].split("/")[0]
    data_dir = str(platform.settings.paths.data_dir)
    for leak in ("127.0.0.1", "localhost", upstream_port, "3306", data_dir, "data_dir"):
        assert leak not in text, leak
    assert rows["chat history (conversations, messages)"]["stored"] in {
        "database: SQLite, embedded",
        "database: MariaDB/MySQL",
    }
    assert rows["uploads"]["stored"] == "object store: local disk"
    assert rows["inference prompts (redacted)"]["stored"] == (
        "inference: remote provider (OpenAI-compatible API)"
    )
    member = await platform.login(admin.tenant, Role.MEMBER)
    refused = await platform.client.get("/api/v1/admin/doctor", headers=_auth(member))
    assert refused.status_code == 403
