"""SCIM Users over HTTP: CRUD, filters, sorting, paging, ETags, tokens and tenant isolation."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from tests.conftest import Platform
from tests.integration.scim.conftest import USER_SCHEMA, Scim, new_scim, patch

from obsigen.db.base import utcnow
from obsigen.db.models import AuditEventRecord, User
from obsigen.db.scim_models import ScimToken


def error_type(response: object) -> str | None:
    body = response.json()  # type: ignore[attr-defined]
    assert body["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    return body.get("scimType")


async def test_create_read_replace_delete(scim: Scim) -> None:
    created = await scim.create_user(
        "Ada.Lovelace@Example.EU",
        name={"givenName": "Ada", "familyName": "Lovelace"},
        emails=[{"value": "ada@example.eu", "type": "work", "primary": True}],
        externalId="ext-1",
        title="Countess",
    )
    user_id = created["id"]
    assert created["meta"]["version"] == 'W/"1"'
    got = await scim.call("GET", f"/Users/{user_id}")
    assert got.status_code == 200
    assert got.headers["content-type"].startswith("application/scim+json")
    assert got.headers["etag"] == 'W/"1"'
    assert got.json()["title"] == "Countess"
    async with scim.platform.services.sessions() as session:
        user = await session.get(User, user_id)
        assert user is not None
        assert user.email == "ada@example.eu"
        assert user.password_hash is None  # SSO only

    body = {"schemas": [USER_SCHEMA], "userName": "ada", "emails": [{"value": "a2@example.eu"}]}
    replaced = await scim.call("PUT", f"/Users/{user_id}", body)
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["meta"]["version"] == 'W/"2"'
    assert "title" not in replaced.json()  # PUT replaces the whole resource
    async with scim.platform.services.sessions() as session:
        user = await session.get(User, user_id)
        assert user is not None
        assert user.email == "a2@example.eu"

    assert (await scim.call("DELETE", f"/Users/{user_id}")).status_code == 204
    missing = await scim.call("GET", f"/Users/{user_id}")
    assert missing.status_code == 404
    async with scim.platform.services.sessions() as session:
        assert await session.get(User, user_id) is None


async def test_every_write_is_audited_with_the_token_as_actor(scim: Scim) -> None:
    created = await scim.create_user("audited@example.eu")
    await scim.call(
        "PATCH",
        f"/Users/{created['id']}",
        patch({"op": "replace", "path": "displayName", "value": "A"}),
    )
    async with scim.platform.services.sessions() as session:
        records = (
            await session.scalars(
                select(AuditEventRecord.record).where(
                    AuditEventRecord.tenant_id == scim.tenant_id,
                    AuditEventRecord.event_type == "admin.change",
                )
            )
        ).all()
    events = [json.loads(record) for record in records]
    actions = [e["data"]["action"] for e in events]
    assert actions[:2] == ["scim.user.create", "scim.user.patch"]
    assert all(e["actor"] == {"kind": "scim", "id": scim.token_id} for e in events)


async def test_user_name_and_email_are_unique(scim: Scim) -> None:
    await scim.create_user("dup@example.eu")
    again = await scim.call(
        "POST", "/Users", {"schemas": [USER_SCHEMA], "userName": "DUP@example.eu"}
    )
    assert again.status_code == 409
    assert error_type(again) == "uniqueness"
    other = await scim.call(
        "POST",
        "/Users",
        {"schemas": [USER_SCHEMA], "userName": "x", "emails": [{"value": "dup@example.eu"}]},
    )
    assert other.status_code == 409
    assert error_type(other) == "uniqueness"


async def test_a_local_password_account_is_never_taken_over(scim: Scim) -> None:
    local = await scim.platform.login(scim.tenant)
    taken = await scim.call("POST", "/Users", {"schemas": [USER_SCHEMA], "userName": local.email})
    assert taken.status_code == 409
    assert error_type(taken) == "uniqueness"


async def test_a_user_without_an_address_gets_a_placeholder(scim: Scim) -> None:
    created = await scim.create_user("no-address-here")
    async with scim.platform.services.sessions() as session:
        user = await session.get(User, created["id"])
        assert user is not None
        assert user.email == f"{created['id']}@scim.invalid"


async def test_missing_user_name_and_bad_json_are_scim_errors(scim: Scim) -> None:
    missing = await scim.call("POST", "/Users", {"schemas": [USER_SCHEMA]})
    assert missing.status_code == 400
    assert error_type(missing) is not None
    bad = await scim.platform.client.post("/scim/v2/Users", content=b"{nope", headers=scim.headers)
    assert bad.status_code == 400
    assert error_type(bad) == "invalidSyntax"


# --- filters ---------------------------------------------------------------------------------


@pytest.fixture
async def people(scim: Scim) -> dict[str, str]:
    ids = {}
    for name, given, kind, active in [
        ("alice@example.eu", "Alice", "work", True),
        ("bob@example.eu", "Bob", "home", True),
        ("carol@corp.example", "Carol", "work", False),
    ]:
        created = await scim.create_user(
            name,
            name={"givenName": given},
            emails=[{"value": name, "type": kind, "primary": True}],
            active=active,
            displayName=f"{given} Example" if given != "Bob" else None,
        )
        ids[given] = created["id"]
    return ids


async def names(scim: Scim, filter_: str, **params: str) -> list[str]:
    response = await scim.call("GET", "/Users", params={"filter": filter_, **params})
    assert response.status_code == 200, response.text
    return sorted(r["userName"] for r in response.json().get("Resources", []))


@pytest.mark.parametrize(
    ("filter_", "expected"),
    [
        ('userName eq "ALICE@example.eu"', ["alice@example.eu"]),  # caseExact false
        ('userName ne "alice@example.eu"', ["bob@example.eu", "carol@corp.example"]),
        ('userName co "OB@"', ["bob@example.eu"]),
        ('userName sw "car"', ["carol@corp.example"]),
        ('userName ew ".eu"', ["alice@example.eu", "bob@example.eu"]),
        ("displayName pr", ["alice@example.eu", "carol@corp.example"]),
        ('userName gt "bob@example.eu"', ["carol@corp.example"]),
        ('userName ge "bob@example.eu"', ["bob@example.eu", "carol@corp.example"]),
        ('userName lt "bob@example.eu"', ["alice@example.eu"]),
        ('userName le "bob@example.eu"', ["alice@example.eu", "bob@example.eu"]),
        ("active eq false", ["carol@corp.example"]),
        (
            'name.givenName eq "alice" or name.givenName eq "bob"',
            ["alice@example.eu", "bob@example.eu"],
        ),
        ('active eq true and not (userName sw "a")', ["bob@example.eu"]),
        ('emails[type eq "work" and value co "corp"]', ["carol@corp.example"]),
        ('emails[type eq "work"].value ew ".eu"', ["alice@example.eu"]),
        ('emails.value eq "BOB@example.eu"', ["bob@example.eu"]),
        ('urn:ietf:params:scim:schemas:core:2.0:User:userName sw "al"', ["alice@example.eu"]),
        (
            'meta.created gt "2000-01-01T00:00:00Z"',
            ["alice@example.eu", "bob@example.eu", "carol@corp.example"],
        ),
        ('userName co "%"', []),  # LIKE wildcards are escaped
        ('userName co "_"', []),
    ],
)
async def test_filter_operators(
    scim: Scim, people: dict[str, str], filter_: str, expected: list[str]
) -> None:
    assert await names(scim, filter_) == expected


async def test_filter_on_id_and_groups(scim: Scim, people: dict[str, str]) -> None:
    assert await names(scim, f'id eq "{people["Bob"]}"') == ["bob@example.eu"]
    group = await scim.create_group("eng", [people["Alice"]])
    assert await names(scim, f'groups.value eq "{group["id"]}"') == ["alice@example.eu"]


@pytest.mark.parametrize(
    "filter_",
    [
        'password eq "x"',  # outside the allow-list
        'userName eq "a" or x.y pr',
        'urn:example:other:userName eq "a"',
        "active gt true",
        'active eq "true"',
        'meta.created gt "yesterday"',
        "userName eq",
        '"; DROP TABLE users; --',
        'userName eq "a" ) or (1 eq 1',
        "userName eq 'a' or 1=1",
    ],
)
async def test_invalid_filters_are_refused(
    scim: Scim, people: dict[str, str], filter_: str
) -> None:
    response = await scim.call("GET", "/Users", params={"filter": filter_})
    assert response.status_code == 400, response.text
    assert error_type(response) == "invalidFilter"


@pytest.mark.parametrize(
    "value",
    [
        "' OR '1'='1",
        "x') OR 1=1 --",
        'a\\" or \\"1\\" eq \\"1',
        "%' UNION SELECT email FROM users --",
        "\\u0000",
    ],
)
async def test_injection_in_values_is_only_data(
    scim: Scim, people: dict[str, str], value: str
) -> None:
    # Quoted as a SCIM string, the attempt is a value like any other: it matches nothing.
    for op in ("eq", "co", "sw", "ew", "gt"):
        quoted = json.dumps(value)
        response = await scim.call("GET", "/Users", params={"filter": f"userName {op} {quoted}"})
        assert response.status_code in (200, 400), response.text
        if response.status_code == 200 and op != "gt":
            assert response.json()["totalResults"] == 0
    async with scim.platform.services.sessions() as session:
        assert (
            await session.scalars(select(User.id).where(User.tenant_id == scim.tenant_id))
        ).all()


async def test_sort_and_pagination(scim: Scim, people: dict[str, str]) -> None:
    response = await scim.call(
        "GET", "/Users", params={"sortBy": "userName", "sortOrder": "descending", "count": "2"}
    )
    body = response.json()
    assert body["totalResults"] == 3
    assert body["itemsPerPage"] == 2
    assert body["startIndex"] == 1
    assert [r["userName"] for r in body["Resources"]] == ["carol@corp.example", "bob@example.eu"]
    second = await scim.call(
        "GET",
        "/Users",
        params={"sortBy": "userName", "sortOrder": "descending", "startIndex": "3", "count": "2"},
    )
    assert [r["userName"] for r in second.json()["Resources"]] == ["alice@example.eu"]
    counted = await scim.call("GET", "/Users", params={"count": "0"})
    assert counted.json()["totalResults"] == 3
    assert counted.json().get("Resources", []) == []
    refused = await scim.call("GET", "/Users", params={"sortBy": "password"})
    assert refused.status_code == 400


async def test_attributes_parameter_selects_what_returns(
    scim: Scim, people: dict[str, str]
) -> None:
    response = await scim.call(
        "GET", f"/Users/{people['Alice']}", params={"attributes": "userName"}
    )
    assert set(response.json()) == {"schemas", "id", "userName"}


# --- ETags -----------------------------------------------------------------------------------


async def test_if_match_mismatch_is_412_and_if_none_match_304(scim: Scim) -> None:
    created = await scim.create_user("etag@example.eu")
    path = f"/Users/{created['id']}"
    stale = await scim.call(
        "PATCH",
        path,
        patch({"op": "replace", "path": "displayName", "value": "x"}),
        headers={"If-Match": 'W/"7"'},
    )
    assert stale.status_code == 412, stale.text
    fresh = await scim.call(
        "PATCH",
        path,
        patch({"op": "replace", "path": "displayName", "value": "x"}),
        headers={"If-Match": 'W/"1"'},
    )
    assert fresh.status_code == 200
    assert fresh.headers["etag"] == 'W/"2"'
    assert (await scim.call("DELETE", path, headers={"If-Match": 'W/"1"'})).status_code == 412
    cached = await scim.call("GET", path, headers={"If-None-Match": 'W/"2"'})
    assert cached.status_code == 304
    changed = await scim.call("GET", path, headers={"If-None-Match": 'W/"1"'})
    assert changed.status_code == 200


# --- tokens and tenants ----------------------------------------------------------------------


async def test_without_a_token_or_with_a_user_token_is_401(scim: Scim) -> None:
    bare = await scim.platform.client.get("/scim/v2/Users")
    assert bare.status_code == 401
    assert error_type(bare) is None
    user = await scim.platform.login(scim.tenant)
    as_user = await scim.platform.client.get("/scim/v2/Users", headers=Platform.auth(user.token))
    assert as_user.status_code == 401


async def test_a_revoked_or_expired_token_is_401(scim: Scim) -> None:
    assert (await scim.call("GET", "/Users")).status_code == 200
    async with scim.platform.services.sessions.begin() as session:
        await session.execute(
            update(ScimToken).where(ScimToken.id == scim.token_id).values(revoked_at=utcnow())
        )
    assert (await scim.call("GET", "/Users")).status_code == 401

    fresh = await new_scim(scim.platform)
    assert (await fresh.call("GET", "/Users")).status_code == 200
    async with scim.platform.services.sessions.begin() as session:
        await session.execute(
            update(ScimToken)
            .where(ScimToken.id == fresh.token_id)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    assert (await fresh.call("GET", "/Users")).status_code == 401


async def test_a_token_older_than_the_maximum_age_is_401(scim: Scim) -> None:
    max_days = scim.platform.settings.secrets.max_age_days.scim_token
    async with scim.platform.services.sessions.begin() as session:
        await session.execute(
            update(ScimToken)
            .where(ScimToken.id == scim.token_id)
            .values(created_at=utcnow() - timedelta(days=max_days + 1))
        )
    assert (await scim.call("GET", "/Users")).status_code == 401


async def test_another_tenants_resources_are_404(scim: Scim, platform: Platform) -> None:
    other = await new_scim(platform)
    theirs = await other.create_user("theirs@example.eu")
    their_group = await other.create_group("theirs")
    for method in ("GET", "PUT", "PATCH", "DELETE"):
        body = (
            patch({"op": "replace", "path": "displayName", "value": "x"})
            if method == "PATCH"
            else {"schemas": [USER_SCHEMA], "userName": "x@example.eu"}
        )
        response = await scim.call(method, f"/Users/{theirs['id']}", body)
        assert response.status_code == 404, (method, response.text)
        response = await scim.call(method, f"/Groups/{their_group['id']}", body)
        assert response.status_code == 404, (method, response.text)
    listed = await scim.call("GET", "/Users")
    assert listed.json()["totalResults"] == 0
    # Nor can one of ours join their group, or theirs join ours.
    ours = await scim.create_user("ours@example.eu")
    joined = await scim.call(
        "POST",
        "/Groups",
        {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "g",
            "members": [{"value": theirs["id"]}],
        },
    )
    assert joined.status_code == 400
    assert error_type(joined) == "invalidValue"
    assert (await other.call("GET", f"/Users/{ours['id']}")).status_code == 404


async def test_rotation_report_lists_scim_tokens(scim: Scim) -> None:
    from obsigen.secrets.rotation import RotationState, scim_token_items

    settings = scim.platform.settings
    async with scim.platform.services.sessions() as session:
        items = await scim_token_items(session, settings, utcnow())
    assert all(i.state is not RotationState.EXPIRED for i in items)
    assert not [i for i in items if i.name.startswith(scim.token_id)]  # fresh: not warned
    # 300 days into a 365-day token: past the 80 % warning mark.
    async with scim.platform.services.sessions.begin() as session:
        await session.execute(
            update(ScimToken)
            .where(ScimToken.tenant_id == scim.tenant_id)
            .values(created_at=utcnow() - timedelta(days=300))
        )
    async with scim.platform.services.sessions() as session:
        items = await scim_token_items(session, settings, utcnow())
    warned = [i for i in items if i.name.startswith(scim.token_id)]
    assert [i.state for i in warned] == [RotationState.WARN]
