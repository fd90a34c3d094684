"""Every route with a path id x every id kind of another tenant -> 404, and nothing changes.

The (route, id kind) pairs come from the app's own routes: a new route with a path parameter
is covered by itself, and one whose parameter this file cannot fill fails ``test_every_path_
parameter_is_known`` until the matrix learns it (``KIND_OF``, ``NOT_TENANT_DATA``).

Tenant A gets one object of each kind; an admin of tenant B (with MFA; for SCIM, B's SCIM
token) calls every method of every such route with A's ids and must get 404 problem (SCIM:
its own error message) - never 200, 403 or 500 - and A's rows must be unchanged afterwards.
The hand-written checks for conversations stay in ``test_tenant_isolation.py``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from sqlalchemy import text
from tests.conftest import LoggedIn, Platform, platform_settings

from obsigen.app import create_app
from obsigen.artifacts.store import ArtifactStore
from obsigen.authz.permissions import Permission, Role
from obsigen.authz.principal import Principal
from obsigen.db.base import utcnow
from obsigen.db.tool_policy_models import ToolApproval
from obsigen.identity.tenants import tenant_by_name
from obsigen.scim.tokens import create_token
from obsigen.tasks.dead_letters import record_dead_letter

SCIM_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
SCIM_GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
SCIM_PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def kind_of(path: str, param: str) -> str | None:
    """The kind of tenant object a path parameter names; None when unknown."""
    if path.startswith("/scim/v2/"):
        return {"user_id": "scim_user", "group_id": "scim_group"}.get(param)
    if param == "name":
        return "role" if path.startswith("/api/v1/roles/") else None
    return {
        "conversation_id": "conversation",
        "approval_id": "approval",
        "role": "role",
        "user_id": "user",
        "file_id": "file",
        "idp_id": "idp",
        "mapping_id": "mapping",
        "artifact_id": "artifact",
        "letter_id": "dead_letter",
        "api_key_id": "apikey",
    }.get(param)


# (path, param) -> why it names no tenant's private object.
NOT_TENANT_DATA: dict[tuple[str, str], str] = {
    ("/scim/v2/ResourceTypes/{type_id}", "type_id"): "static SCIM discovery document",
    ("/scim/v2/Schemas/{schema_id}", "schema_id"): "static SCIM discovery document",
    ("/ui/static/{name}", "name"): "the web UI's static assets",
    ("/scim/v2/{rest}", "rest"): "catch-all answering 404/405 for what is not an endpoint",
    # An IdP's sign-in entry points are public by design (the browser reaches them before
    # anyone is logged in); they never act on a bearer token's tenant.
    ("/auth/oidc/{idp_id}/login", "idp_id"): "public SSO entry point",
    ("/auth/oidc/{idp_id}/callback", "idp_id"): "public SSO entry point",
    ("/auth/saml/{idp_id}/metadata", "idp_id"): "public SSO entry point",
    ("/auth/saml/{idp_id}/login", "idp_id"): "public SSO entry point",
    ("/auth/saml/{idp_id}/acs", "idp_id"): "public SSO entry point",
}

# (method, path) -> a body valid enough to reach the lookup (else the answer would be 422).
BODIES: dict[tuple[str, str], Any] = {
    ("PATCH", "/api/v1/conversations/{conversation_id}"): {"title": "mine now"},
    ("POST", "/api/v1/conversations/{conversation_id}/messages"): {
        "content": "hi",
        "model": "fake-model",
    },
    ("PATCH", "/api/v1/roles/{name}"): {"description": "taken over"},
    ("POST", "/api/v1/users/{user_id}/roles"): {"role": "member"},
    ("PATCH", "/api/v1/idps/{idp_id}"): {"display_name": "taken over"},
    ("PUT", "/scim/v2/Users/{user_id}"): {"schemas": [SCIM_USER], "userName": "taken-over"},
    ("PATCH", "/scim/v2/Users/{user_id}"): {
        "schemas": [SCIM_PATCH],
        "Operations": [{"op": "replace", "path": "active", "value": False}],
    },
    ("PUT", "/scim/v2/Groups/{group_id}"): {"schemas": [SCIM_GROUP], "displayName": "taken"},
    ("PATCH", "/scim/v2/Groups/{group_id}"): {
        "schemas": [SCIM_PATCH],
        "Operations": [{"op": "replace", "path": "displayName", "value": "taken"}],
    },
}

# kind -> (table, column) whose row must not change.
ROWS: dict[str, tuple[str, str]] = {
    "conversation": ("conversations", "id"),
    "approval": ("tool_approvals", "id"),
    "role": ("custom_roles", "name"),
    "user": ("users", "id"),
    "file": ("files", "id"),
    "idp": ("identity_providers", "id"),
    "mapping": ("group_role_mappings", "id"),
    "artifact": ("artifacts", "id"),
    "dead_letter": ("task_dead_letters", "id"),
    "apikey": ("api_keys", "id"),
    "scim_user": ("scim_users", "user_id"),  # the SCIM id is the platform user id
    "scim_group": ("scim_groups", "id"),
}


@dataclass(frozen=True)
class Pair:
    method: str
    path: str
    kinds: dict[str, str]  # param -> kind

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def id_routes(app: FastAPI) -> tuple[list[Pair], list[str]]:
    """Every method of every route with a path parameter, and the parameters nobody knows."""
    pairs: list[Pair] = []
    unknown: list[str] = []
    for context in iter_route_contexts(app.routes):
        if not isinstance(context.original_route, APIRoute) or not context.param_convertors:
            continue
        path = str(context.path_format)
        kinds: dict[str, str] = {}
        for param in context.param_convertors:
            if (path, param) in NOT_TENANT_DATA:
                continue
            kind = kind_of(path, param)
            if kind is None:
                unknown.append(f"{path}: {{{param}}}")
            else:
                kinds[param] = kind
        if kinds and len(kinds) == len(context.param_convertors):
            for method in sorted(set(context.methods or ()) - {"HEAD", "OPTIONS"}):
                pairs.append(Pair(method, path, kinds))
    return pairs, unknown


def _app() -> FastAPI:
    # Routes only: the app is never started, so nothing here is reached.
    settings = platform_settings(Path("/nonexistent"), "sqlite+aiosqlite://", "http://127.0.0.1:9")
    return create_app(settings)


def test_every_path_parameter_is_known() -> None:
    pairs, unknown = id_routes(_app())
    assert not unknown, (
        "routes with a path id the isolation matrix cannot fill; teach kind_of() (and the "
        f"fixture below) or NOT_TENANT_DATA about them: {unknown}"
    )
    # Every kind the matrix knows is used by some route, and the routes are many.
    assert {kind for pair in pairs for kind in pair.kinds.values()} == set(ROWS)
    assert len(pairs) >= 30


def test_an_unknown_path_id_fails_the_matrix() -> None:
    app = _app()

    @app.get("/api/v1/widgets/{widget_id}")
    async def widget(widget_id: str) -> str:
        return widget_id

    _, unknown = id_routes(app)
    assert unknown == ["/api/v1/widgets/{widget_id}: {widget_id}"]


# --- tenant A's objects ----------------------------------------------------------------------


async def _scim_token(platform: Platform, tenant: str) -> str:
    async with platform.services.sessions.begin() as session:
        row = await tenant_by_name(session, tenant)
        created = await create_token(session, row, "matrix", None, max_age=timedelta(days=365))
    return created.secret


async def _ok(platform: Platform, method: str, path: str, token: str, **kwargs: Any) -> Any:
    headers = {**Platform.auth(token), **kwargs.pop("headers", {})}
    response = await platform.client.request(method, path, headers=headers, **kwargs)
    assert response.status_code in (200, 201), (method, path, response.text)
    return response.json()


async def _objects_of(platform: Platform, tenant: str, admin: LoggedIn) -> dict[str, str]:
    """One object of each kind in ``tenant``: kind -> id."""
    token = admin.token
    ids: dict[str, str] = {"user": admin.user_id}
    chat = await platform.chat(token, "tenant A's secret plans")
    assert chat.status_code == 200, chat.text
    ids["conversation"] = chat.json()["conversation_id"]
    role = f"r{uuid.uuid4().hex[:8]}"
    await _ok(
        platform,
        "POST",
        "/api/v1/roles",
        token,
        json={"name": role, "permissions": [Permission.MODELS_READ.value]},
    )
    ids["role"] = role
    boundary = "matrixboundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n'
        f"Content-Type: text/plain\r\n\r\ntenant A's file\r\n--{boundary}--\r\n"
    ).encode()
    uploaded = await _ok(
        platform,
        "POST",
        "/api/v1/files",
        token,
        content=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    ids["file"] = uploaded["id"]
    idp = await _ok(
        platform,
        "POST",
        "/api/v1/idps",
        token,
        json={
            "slug": f"idp-{uuid.uuid4().hex[:8]}",
            "protocol": "oidc",
            "display_name": "A's IdP",
            "domains": ["a.example.eu"],
            "config": {
                "issuer": "https://idp.a.example.eu",
                "client_id": "a",
                "client_secret": "env:A_IDP_CLIENT_SECRET",
            },
        },
    )
    ids["idp"] = idp["id"]
    mapping = await _ok(
        platform,
        "POST",
        "/api/v1/group-mappings",
        token,
        json={"source": f"idp:{ids['idp']}", "group": "staff", "role": "member"},
    )
    ids["mapping"] = mapping["id"]
    key = await _ok(platform, "POST", "/api/v1/api-keys", token, json={"name": "A's key"})
    ids["apikey"] = key["id"]
    async with platform.services.sessions() as session:
        tenant_id = (await tenant_by_name(session, tenant)).id
    principal = Principal(tenant_id=tenant_id, kind="user", id=admin.user_id, roles=frozenset())
    store = ArtifactStore(platform.services.sessions, platform.services.objects, None)
    artifact = await store.save(
        principal,
        kind="chart",
        name="a.png",
        content_type="image/png",
        data=b"\x89PNG tenant A",
    )
    ids["artifact"] = artifact.id
    async with platform.services.sessions.begin() as session:
        approval = ToolApproval(
            tenant_id=tenant_id,
            conversation_id=ids["conversation"],
            interaction_id=uuid.uuid4().hex,
            tool_call_id=uuid.uuid4().hex,
            tool_message_id=uuid.uuid4().hex,
            call_id="call_1",
            tool="run_python",
            arguments="{}",
            requested_by_kind="user",
            requested_by_id=admin.user_id,
            policy_version=1,
            rule="approval",
            expires_at=utcnow() + timedelta(hours=1),
        )
        session.add(approval)
        await session.flush()
        ids["approval"] = approval.id
    task_id = uuid.uuid4().hex
    await record_dead_letter(
        platform.services.sessions,
        task_id=task_id,
        task_name="ingest_file",
        args=[],
        kwargs={"tenant_id": tenant_id, "file_id": ids["file"]},
        error="boom",
        attempts=3,
    )
    async with platform.services.sessions() as session:
        ids["dead_letter"] = (
            await session.execute(
                text("SELECT id FROM task_dead_letters WHERE task_id = :t"), {"t": task_id}
            )
        ).scalar_one()
    scim = {"Authorization": f"Bearer {await _scim_token(platform, tenant)}"}
    user = await platform.client.post(
        "/scim/v2/Users", json={"schemas": [SCIM_USER], "userName": "alice-a"}, headers=scim
    )
    assert user.status_code == 201, user.text
    ids["scim_user"] = user.json()["id"]
    group = await platform.client.post(
        "/scim/v2/Groups",
        json={"schemas": [SCIM_GROUP], "displayName": "A staff"},
        headers=scim,
    )
    assert group.status_code == 201, group.text
    ids["scim_group"] = group.json()["id"]
    return ids


async def _rows(platform: Platform, tenant_id: str, ids: dict[str, str]) -> dict[str, Any]:
    snapshot: dict[str, Any] = {}
    async with platform.services.sessions() as session:
        for kind, (table, column) in ROWS.items():
            result = await session.execute(
                text(f"SELECT * FROM {table} WHERE {column} = :v AND tenant_id = :t"),  # noqa: S608 (names from ROWS)
                {"v": ids[kind], "t": tenant_id},
            )
            rows = [tuple(row) for row in result]
            assert len(rows) == 1, (kind, rows)
            snapshot[kind] = rows[0]
    return snapshot


# An id of each kind that exists in no tenant.
MISSING = dict.fromkeys(ROWS, "0" * 32) | {"role": "r00000000"}


def _masked(body: str, pair: Pair, ids: dict[str, str]) -> str:
    for kind in pair.kinds.values():
        body = body.replace(ids[kind], "<id>")
    return body


def _fill(path: str, pair: Pair, ids: dict[str, str]) -> str:
    for param, kind in pair.kinds.items():
        path = path.replace("{" + param + "}", ids[kind])
    return path


async def test_another_tenants_ids_answer_404_everywhere(platform: Platform) -> None:
    a, b = await platform.tenant("a"), await platform.tenant("b")
    owner = await platform.login(a, Role.ADMIN)
    intruder = await platform.login(b, Role.ADMIN)
    intruder_scim = {"Authorization": f"Bearer {await _scim_token(platform, b)}"}
    ids = await _objects_of(platform, a, owner)
    async with platform.services.sessions() as session:
        a_id = (await tenant_by_name(session, a)).id
    before = await _rows(platform, a_id, ids)
    pairs, _ = id_routes(_app())

    wrong: list[str] = []
    for pair in pairs:
        scim = pair.path.startswith("/scim/v2/")
        headers = intruder_scim if scim else Platform.auth(intruder.token)
        response = await platform.client.request(
            pair.method,
            _fill(pair.path, pair, ids),
            json=BODIES.get((pair.method, pair.path)),
            headers=headers,
        )
        media = response.headers.get("content-type", "")
        expected_media = "application/scim+json" if scim else "application/problem+json"
        if response.status_code != 404 or not media.startswith(expected_media):
            wrong.append(f"{pair}: {response.status_code} {response.text[:200]}")
            continue
        # A's id answers exactly as an id that exists nowhere (echoing what was sent is fine).
        missing = await platform.client.request(
            pair.method,
            _fill(pair.path, pair, MISSING),
            json=BODIES.get((pair.method, pair.path)),
            headers=headers,
        )
        if _masked(response.text, pair, ids) != _masked(missing.text, pair, MISSING):
            wrong.append(f"{pair}: {response.text[:200]} differs from {missing.text[:200]}")

    assert not wrong, "\n".join(wrong)
    assert await _rows(platform, a_id, ids) == before
    # A's own session survived every call on A's user id.
    me = await platform.client.get("/auth/me", headers=Platform.auth(owner.token))
    assert me.status_code == 200


async def test_the_owner_reaches_each_object(platform: Platform) -> None:
    """The ids are real: A's admin (or SCIM client) reads each kind the matrix uses."""
    a = await platform.tenant("a")
    owner = await platform.login(a, Role.ADMIN)
    ids = await _objects_of(platform, a, owner)
    scim = {"Authorization": f"Bearer {await _scim_token(platform, a)}"}
    pairs, _ = id_routes(_app())
    reached: set[str] = set()
    for pair in pairs:
        if pair.method != "GET":
            continue
        headers = scim if pair.path.startswith("/scim/v2/") else Platform.auth(owner.token)
        response = await platform.client.get(_fill(pair.path, pair, ids), headers=headers)
        assert response.status_code == 200, (str(pair), response.text)
        reached.update(pair.kinds.values())
    # Kinds without a GET route are checked through their rows in the 404 test.
    assert reached >= {"conversation", "approval", "file", "idp", "artifact", "scim_user"}
