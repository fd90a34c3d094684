"""GET /api/v1/audit/events: auditors and admins with MFA read their own tenant's trail only."""

from __future__ import annotations

from typing import Any

from tests.conftest import Platform

from obsigen.authz.permissions import Role


async def search(platform: Platform, token: str, **params: Any) -> dict[str, Any]:
    response = await platform.client.get(
        "/api/v1/audit/events", params=params, headers=platform.auth(token)
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_auditor_finds_a_members_turn_and_nothing_of_other_tenants(
    platform: Platform,
) -> None:
    member = await platform.login(role=Role.MEMBER)
    auditor = await platform.login(member.tenant, Role.AUDITOR)
    stranger = await platform.login(role=Role.MEMBER)
    assert (await platform.chat(member.token, "Hello from the member")).status_code == 200
    assert (await platform.chat(stranger.token, "Hello from elsewhere")).status_code == 200

    prompts = (await search(platform, auditor.token, type="chat.prompt"))["events"]
    assert [e["actor"]["id"] for e in prompts] == [member.user_id]

    by_actor = (await search(platform, auditor.token, actor_id=member.user_id))["events"]
    assert by_actor
    assert {e["actor"]["id"] for e in by_actor} == {member.user_id}
    logins = await search(platform, auditor.token, type="auth.login", outcome="success")
    assert {e["actor"]["id"] for e in logins["events"]} == {member.user_id, auditor.user_id}


async def test_pages_walk_back_without_gaps(platform: Platform) -> None:
    member = await platform.login(role=Role.MEMBER)
    admin = await platform.login(member.tenant, Role.ADMIN)
    for n in range(3):
        assert (await platform.chat(member.token, f"turn {n}")).status_code == 200
    everything = (await search(platform, admin.token, limit=500))["events"]

    seen: list[int] = []
    cursor: int | None = None
    while True:
        params: dict[str, Any] = {"limit": 4}
        if cursor is not None:
            params["before_seq"] = cursor
        page = await search(platform, admin.token, **params)
        seen += [e["seq"] for e in page["events"]]
        cursor = page["next_before_seq"]
        if cursor is None:
            break
    # Searching is itself audited, so later pages may see newer search events: compare the
    # events that existed before paging started.
    before = [e["seq"] for e in everything]
    assert [s for s in seen if s <= before[0]] == before
    assert seen == sorted(seen, reverse=True)


async def test_searching_is_itself_recorded(platform: Platform) -> None:
    admin = await platform.login(role=Role.ADMIN)
    await search(platform, admin.token, type="chat.prompt")
    recorded = (await search(platform, admin.token, type="audit.export"))["events"]
    assert recorded[-1]["data"]["filters"] == {"type": "chat.prompt"}
    assert recorded[-1]["actor"]["id"] == admin.user_id


async def test_members_and_password_only_admins_are_refused(platform: Platform) -> None:
    member = await platform.login(role=Role.MEMBER)
    admin = await platform.login(member.tenant, Role.ADMIN, mfa=False)
    as_member = await platform.client.get(
        "/api/v1/audit/events", headers=platform.auth(member.token)
    )
    as_admin = await platform.client.get("/api/v1/audit/events", headers=platform.auth(admin.token))
    assert as_member.status_code == 403
    assert as_member.json()["type"].endswith("/forbidden")
    assert as_admin.status_code == 403
    assert as_admin.json()["type"].endswith("/mfa-required")


async def test_bad_filters_are_clear_errors(platform: Platform) -> None:
    admin = await platform.login(role=Role.ADMIN)
    for params in (
        {"type": "no.such.type"},
        {"actor_id": '"%'},
        {"since": "2026-11-26T10:00:00"},
        {"limit": 0},
    ):
        response = await platform.client.get(
            "/api/v1/audit/events", params=params, headers=platform.auth(admin.token)
        )
        assert response.status_code == 422, (params, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
