"""/api/v1/artifacts over HTTP: owner-only downloads served as inert attachments, listing,
deletion, and the same 404 for missing, foreign-user and foreign-tenant ids."""

from __future__ import annotations

import io

from PIL import Image
from tests.conftest import Platform
from tests.integration.artifacts.artifact_helpers import (
    artifact_store,
    audit_events,
    chart_for,
    principal_of,
)

from obsigen.authz.permissions import Role
from obsigen.files.stores import ObjectKey

PROBLEM = "application/problem+json"


async def test_the_owner_downloads_the_chart_as_an_inert_attachment(platform: Platform) -> None:
    key = await platform.api_key()
    artifact_id = await chart_for(platform, key, title="Revenue 2026")

    response = await platform.client.get(
        f"/api/v1/artifacts/{artifact_id}", headers=platform.auth(key)
    )

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-disposition"] == (
        "attachment; filename=\"Revenue 2026.png\"; filename*=UTF-8''Revenue%202026.png"
    )
    assert response.headers["cache-control"] == "private, no-store"
    image = Image.open(io.BytesIO(response.content))
    assert (image.format, image.size, image.mode) == ("PNG", (1200, 675), "RGBA")
    types = [(e["type"], (e["target"] or {}).get("kind")) for e in audit_events(platform)]
    assert ("artifact.create", "artifact") in types
    assert ("file.download", "artifact") in types


async def test_a_hostile_name_is_sanitised_for_the_header(platform: Platform) -> None:
    key = await platform.api_key()
    row = await artifact_store(platform).save(
        await principal_of(platform, key),
        kind="sandbox",
        name='../../x/évil\u202efdp.exe"\r\nSet-Cookie: a=b.csv',
        content_type="text/csv; charset=utf-8",
        data=b"a,b\n1,2\n",
    )

    response = await platform.client.get(f"/api/v1/artifacts/{row.id}", headers=platform.auth(key))

    assert response.status_code == 200
    assert row.name == "évilfdp.exe_Set-Cookie_ a=b.csv"
    disposition = response.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="_vilfdp.exe_Set-Cookie_ a=b.csv"; ')
    assert "\r" not in disposition
    assert "\n" not in disposition
    assert "set-cookie" not in response.headers
    assert response.content == b"a,b\n1,2\n"


async def test_other_users_and_tenants_get_the_same_404_as_for_a_missing_id(
    platform: Platform,
) -> None:
    tenant = await platform.tenant()
    owner = await platform.api_key(tenant)
    # An admin of the same tenant, with MFA: still not the owner.
    colleague = (await platform.login(tenant, Role.ADMIN)).token
    stranger = await platform.api_key()
    artifact_id = await chart_for(platform, owner)

    answers = [
        await platform.client.get(f"/api/v1/artifacts/{artifact_id}", headers=platform.auth(k))
        for k in (colleague, stranger)
    ]
    answers.append(
        await platform.client.get("/api/v1/artifacts/" + "0" * 32, headers=platform.auth(owner))
    )
    deletes = [
        await platform.client.delete(f"/api/v1/artifacts/{artifact_id}", headers=platform.auth(k))
        for k in (colleague, stranger)
    ]

    for response in answers + deletes:
        assert response.status_code == 404
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["detail"] == "artifact not found"
    listed = await platform.client.get("/api/v1/artifacts", headers=platform.auth(colleague))
    assert listed.json() == []
    still = await platform.client.get(
        f"/api/v1/artifacts/{artifact_id}", headers=platform.auth(owner)
    )
    assert still.status_code == 200


async def test_anonymous_callers_are_refused(platform: Platform) -> None:
    key = await platform.api_key()
    artifact_id = await chart_for(platform, key)
    assert (await platform.client.get(f"/api/v1/artifacts/{artifact_id}")).status_code == 401
    assert (await platform.client.get("/api/v1/artifacts")).status_code == 401


async def test_the_list_is_own_newest_first_and_paginated(platform: Platform) -> None:
    key = await platform.api_key()
    ids = [await chart_for(platform, key, title=f"c{i}") for i in range(3)]
    await chart_for(platform, await platform.api_key())  # someone else's

    first = await platform.client.get("/api/v1/artifacts?limit=2", headers=platform.auth(key))
    assert first.status_code == 200
    page = first.json()
    assert [a["id"] for a in page] == [ids[2], ids[1]]
    assert page[0]["kind"] == "chart"
    assert page[0]["name"] == "c2.png"
    assert page[0]["content_type"] == "image/png"
    assert page[0]["size"] > 0
    rest = await platform.client.get(
        f"/api/v1/artifacts?limit=2&before={ids[1]}", headers=platform.auth(key)
    )
    assert [a["id"] for a in rest.json()] == [ids[0]]
    bad = await platform.client.get("/api/v1/artifacts?limit=0", headers=platform.auth(key))
    assert bad.status_code == 422


async def test_delete_needs_write_and_removes_row_and_object(platform: Platform) -> None:
    tenant = await platform.tenant()
    viewer = await platform.api_key(tenant, Role.VIEWER)
    member = await platform.api_key(tenant)
    viewer_chart = await chart_for(platform, viewer)
    member_chart = await chart_for(platform, member)

    refused = await platform.client.delete(
        f"/api/v1/artifacts/{viewer_chart}", headers=platform.auth(viewer)
    )
    readable = await platform.client.get(
        f"/api/v1/artifacts/{viewer_chart}", headers=platform.auth(viewer)
    )
    deleted = await platform.client.delete(
        f"/api/v1/artifacts/{member_chart}", headers=platform.auth(member)
    )
    after = await platform.client.get(
        f"/api/v1/artifacts/{member_chart}", headers=platform.auth(member)
    )

    assert refused.status_code == 403
    assert readable.status_code == 200
    assert deleted.status_code == 204
    assert after.status_code == 404
    principal = await principal_of(platform, member)
    key = ObjectKey(principal.tenant_id, f"artifact-{member_chart}")
    assert not await platform.services.objects.exists(key)
    deletions = [e for e in audit_events(platform) if e["type"] == "file.delete"]
    assert deletions[-1]["target"] == {"kind": "artifact", "id": member_chart}
