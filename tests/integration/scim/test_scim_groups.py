"""SCIM Groups over HTTP: members by PATCH (with value filters), and group mappings turning
membership into roles, granted and taken back, audited with the token as actor."""

from __future__ import annotations

import json

from sqlalchemy import select
from tests.integration.scim.conftest import GROUP_SCHEMA, Scim, patch

from obsigen.db.federation_models import SCIM_SOURCE, GroupRoleMapping
from obsigen.db.models import AuditEventRecord, RoleBinding


async def roles_of(scim: Scim, user_id: str) -> dict[str, str]:
    async with scim.platform.services.sessions() as session:
        rows = await session.execute(
            select(RoleBinding.role, RoleBinding.source).where(
                RoleBinding.tenant_id == scim.tenant_id, RoleBinding.principal_id == user_id
            )
        )
        return {str(role): str(source) for role, source in rows.all()}


async def map_group(scim: Scim, group: str, role: str) -> None:
    async with scim.platform.services.sessions.begin() as session:
        session.add(
            GroupRoleMapping(
                tenant_id=scim.tenant_id, source=SCIM_SOURCE, group_name=group, role=role
            )
        )


async def member_ids(scim: Scim, group_id: str) -> list[str]:
    body = (await scim.call("GET", f"/Groups/{group_id}")).json()
    return sorted(m["value"] for m in body.get("members", []))


async def test_patch_members_add_and_remove_by_value_filter(scim: Scim) -> None:
    a = (await scim.create_user("a@example.eu"))["id"]
    b = (await scim.create_user("b@example.eu"))["id"]
    group = await scim.create_group("team", [a])
    path = f"/Groups/{group['id']}"
    added = await scim.call(
        "PATCH", path, patch({"op": "add", "path": "members", "value": [{"value": b}]})
    )
    assert added.status_code == 200, added.text
    assert await member_ids(scim, group["id"]) == sorted([a, b])
    removed = await scim.call(
        "PATCH", path, patch({"op": "remove", "path": f'members[value eq "{a}"]'})
    )
    assert removed.status_code == 200, removed.text
    assert await member_ids(scim, group["id"]) == [b]
    # Entra ID's spelling: capitalised op, no path, a whole replacement of displayName.
    renamed = await scim.call(
        "PATCH", path, patch({"op": "Replace", "value": {"displayName": "team-2"}})
    )
    assert renamed.status_code == 200
    assert renamed.json()["displayName"] == "team-2"
    listed = await scim.call("GET", "/Groups", params={"filter": f'members[value eq "{b}"]'})
    assert [g["id"] for g in listed.json()["Resources"]] == [group["id"]]
    assert (await scim.call("GET", "/Groups", params={"excludedAttributes": "members"})).json()[
        "Resources"
    ][0].get("members") is None


async def test_unknown_members_and_nested_groups_are_refused(scim: Scim) -> None:
    group = await scim.create_group("g1")
    unknown = await scim.call(
        "PATCH",
        f"/Groups/{group['id']}",
        patch({"op": "add", "path": "members", "value": [{"value": "0" * 32}]}),
    )
    assert unknown.status_code == 400
    assert unknown.json()["scimType"] == "invalidValue"
    nested = await scim.call(
        "POST",
        "/Groups",
        {
            "schemas": [GROUP_SCHEMA],
            "displayName": "g2",
            "members": [{"value": group["id"], "type": "Group"}],
        },
    )
    assert nested.status_code == 400
    duplicate = await scim.call("POST", "/Groups", {"schemas": [GROUP_SCHEMA], "displayName": "G1"})
    assert duplicate.status_code == 409
    assert duplicate.json()["scimType"] == "uniqueness"


async def test_a_mapped_group_grants_admin_and_leaving_it_takes_it_back(scim: Scim) -> None:
    await map_group(scim, "admins", "admin")
    user = (await scim.create_user("boss@example.eu"))["id"]
    other = (await scim.create_user("other@example.eu"))["id"]
    group = await scim.create_group("admins", [user])
    assert await roles_of(scim, user) == {"admin": "scim"}
    assert await roles_of(scim, other) == {}

    path = f"/Groups/{group['id']}"
    await scim.call("PATCH", path, patch({"op": "remove", "path": f'members[value eq "{user}"]'}))
    assert await roles_of(scim, user) == {}

    # Back in, then the group is renamed to one no mapping names: the role goes again.
    await scim.call(
        "PATCH", path, patch({"op": "add", "path": "members", "value": [{"value": user}]})
    )
    assert await roles_of(scim, user) == {"admin": "scim"}
    await scim.call(
        "PATCH", path, patch({"op": "replace", "path": "displayName", "value": "ex-admins"})
    )
    assert await roles_of(scim, user) == {}
    await scim.call(
        "PATCH", path, patch({"op": "replace", "path": "displayName", "value": "admins"})
    )
    assert await roles_of(scim, user) == {"admin": "scim"}
    assert (await scim.call("DELETE", path)).status_code == 204
    assert await roles_of(scim, user) == {}

    async with scim.platform.services.sessions() as session:
        records = (
            await session.scalars(
                select(AuditEventRecord.record).where(
                    AuditEventRecord.tenant_id == scim.tenant_id,
                    AuditEventRecord.event_type == "admin.change",
                )
            )
        ).all()
    grants = [
        e for e in map(json.loads, records) if e["data"]["action"] in ("role.grant", "role.revoke")
    ]
    assert [e["data"]["action"] for e in grants] == [
        "role.grant",
        "role.revoke",
        "role.grant",
        "role.revoke",
        "role.grant",
        "role.revoke",
    ]
    assert all(e["actor"] == {"kind": "scim", "id": scim.token_id} for e in grants)
    assert all(e["target"] == {"kind": "user", "id": user} for e in grants)


async def test_a_role_granted_locally_survives_scim(scim: Scim) -> None:
    await map_group(scim, "viewers", "viewer")
    user = (await scim.create_user("keep@example.eu"))["id"]
    async with scim.platform.services.sessions.begin() as session:
        session.add(
            RoleBinding(
                tenant_id=scim.tenant_id, principal_kind="user", principal_id=user, role="member"
            )
        )
    group = await scim.create_group("viewers", [user])
    assert await roles_of(scim, user) == {"member": "local", "viewer": "scim"}
    await scim.call("DELETE", f"/Groups/{group['id']}")
    assert await roles_of(scim, user) == {"member": "local"}
