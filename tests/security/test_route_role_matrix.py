"""The route x role matrix: every route declares what it needs, and every built-in role gets
exactly that, over HTTP.

Each ``APIRoute`` of the app must carry ``require(P)`` or ``public()`` somewhere in its
dependency tree; one with neither fails here, so a new route cannot ship unguarded. Each route
is then called as each built-in role (a principal put in place of ``authenticate``): a role
whose ``ROLE_PERMISSIONS`` hold every declared permission must not get 403, any other must get
403 ``forbidden``, every such denial must be in the audit trail, and an administrative
permission without a second factor must get 403 ``mfa-required``.

Expectations come from ``ROLE_PERMISSIONS``, so the matrix follows new routes by itself; the
explicit table below pins the answers that matter most, so that a wrong change to
``ROLE_PERMISSIONS`` (or to a route's declaration) fails too.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from sqlalchemy import select
from starlette.convertors import Convertor, IntegerConvertor
from tests.conftest import Platform, platform_settings

from obsigen.app import create_app
from obsigen.authz.permissions import MFA_REQUIRED, ROLE_PERMISSIONS, Permission, Role
from obsigen.authz.principal import Principal
from obsigen.db.models import AuditEventRecord
from obsigen.identity.tenants import tenant_by_name
from obsigen.web.auth import CurrentPrincipal, authenticate, public, require

# --- what a route declares -------------------------------------------------------------------


@dataclass(frozen=True)
class Access:
    permissions: frozenset[Permission]
    public: bool

    @property
    def declared(self) -> bool:
        return bool(self.permissions) or self.public


@dataclass(frozen=True)
class Endpoint:
    """One method of one route as the app serves it (prefixes and included routers' own
    dependencies applied)."""

    method: str
    path: str
    path_format: str
    param_convertors: dict[str, Convertor[Any]]
    dependant: Dependant
    takes_body: bool

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def declared_access(dependant: Dependant) -> Access:
    """Every ``require``/``public`` marker anywhere in the dependency tree."""
    permissions: set[Permission] = set()
    is_public = False
    pending: list[Dependant] = list(dependant.dependencies)
    while pending:
        current = pending.pop()
        permission = getattr(current.call, "obsigen_permission", None)
        if isinstance(permission, Permission):
            permissions.add(permission)
        if getattr(current.call, "obsigen_public", False) is True:
            is_public = True
        pending.extend(current.dependencies)
    return Access(frozenset(permissions), is_public)


def endpoints(app: FastAPI) -> list[Endpoint]:
    # FastAPI keeps included routers as lazy branches: walk what it actually serves.
    found = []
    for context in iter_route_contexts(app.routes):
        if not isinstance(context.original_route, APIRoute):
            continue
        for method in sorted(set(context.methods or ()) - {"HEAD", "OPTIONS"}):
            found.append(
                Endpoint(
                    method=method,
                    path=str(context.path),
                    path_format=str(context.path_format),
                    param_convertors=dict(context.param_convertors),
                    dependant=context.dependant,
                    takes_body=context.body_field is not None,
                )
            )
    return found


def undeclared(app: FastAPI) -> list[str]:
    return [str(e) for e in endpoints(app) if not declared_access(e.dependant).declared]


def role_may(role: Role, access: Access) -> bool:
    return access.permissions <= ROLE_PERMISSIONS[role]


# The answers that matter most, independent of ROLE_PERMISSIONS: (method, path, role, allowed).
EXPECTED: list[tuple[str, str, Role, bool]] = [
    ("PUT", "/api/v1/tool-policy", Role.MEMBER, False),
    ("PUT", "/api/v1/tool-policy", Role.AUDITOR, False),
    ("PUT", "/api/v1/tool-policy", Role.VIEWER, False),
    ("PUT", "/api/v1/tool-policy", Role.ADMIN, True),
    ("GET", "/api/v1/tool-policy", Role.AUDITOR, True),
    ("GET", "/api/v1/tool-policy", Role.MEMBER, False),
    ("GET", "/api/v1/approvals", Role.MEMBER, False),
    ("GET", "/api/v1/approvals", Role.AUDITOR, False),
    ("POST", "/api/v1/approvals/{approval_id}/approve", Role.MEMBER, False),
    ("POST", "/api/v1/approvals/{approval_id}/approve", Role.ADMIN, True),
    ("POST", "/v1/chat/completions", Role.VIEWER, False),
    ("POST", "/v1/chat/completions", Role.AUDITOR, False),
    ("POST", "/v1/chat/completions", Role.MEMBER, True),
    ("GET", "/v1/models", Role.VIEWER, True),
    ("POST", "/api/v1/code/run", Role.VIEWER, False),
    ("POST", "/api/v1/code/run", Role.AUDITOR, False),
    ("POST", "/api/v1/code/run", Role.MEMBER, True),
    ("GET", "/api/v1/conversations", Role.VIEWER, True),
    ("POST", "/api/v1/conversations", Role.VIEWER, False),
    ("DELETE", "/api/v1/conversations/{conversation_id}", Role.VIEWER, False),
    ("GET", "/api/v1/roles", Role.AUDITOR, True),
    ("GET", "/api/v1/roles", Role.MEMBER, False),
    ("POST", "/api/v1/roles", Role.ADMIN, True),
    ("POST", "/api/v1/roles", Role.AUDITOR, False),
    ("POST", "/api/v1/roles", Role.MEMBER, False),
    ("GET", "/api/v1/users", Role.AUDITOR, True),
    ("GET", "/api/v1/users", Role.VIEWER, False),
    ("POST", "/api/v1/users/{user_id}/roles", Role.ADMIN, True),
    ("POST", "/api/v1/users/{user_id}/roles", Role.AUDITOR, False),
    ("DELETE", "/api/v1/users/{user_id}/roles/{role}", Role.MEMBER, False),
    ("GET", "/healthz", Role.VIEWER, True),
]

# Routes built alongside this suite: pinned where they exist, not required to exist.
EXPECTED_WHERE_PRESENT: list[tuple[str, str, Role, bool]] = [
    ("GET", "/api/v1/audit/events", Role.AUDITOR, True),
    ("GET", "/api/v1/audit/events", Role.MEMBER, False),
    ("GET", "/api/v1/audit/events", Role.VIEWER, False),
    ("DELETE", "/api/v1/users/{user_id}/sessions", Role.ADMIN, True),
    ("DELETE", "/api/v1/users/{user_id}/sessions", Role.AUDITOR, False),
    ("DELETE", "/api/v1/users/{user_id}/sessions", Role.MEMBER, False),
]


# --- the detector itself ---------------------------------------------------------------------


def test_the_detector_catches_a_route_without_a_declaration() -> None:
    router = APIRouter()

    @router.get("/declared")
    async def declared(principal: Principal = require(Permission.MODELS_READ)) -> None:
        return None

    @router.get("/public", dependencies=[public()])
    async def open_route() -> None:
        return None

    async def helper(principal: Principal = require(Permission.AUDIT_READ)) -> Principal:
        return principal

    @router.get("/nested")
    async def nested(principal: Principal = Depends(helper)) -> None:
        return None

    guarded = APIRouter(dependencies=[require(Permission.USERS_READ)])

    @guarded.get("/router-level")
    async def router_level() -> None:
        return None

    @router.get("/undeclared")
    async def undeclared_route(principal: CurrentPrincipal) -> None:
        # Authenticated, but says nothing about what it needs: must not pass.
        return None

    @router.post("/forgotten")
    async def forgotten() -> None:
        return None

    app = FastAPI()
    app.include_router(router)
    app.include_router(guarded)

    assert undeclared(app) == ["GET /undeclared", "POST /forgotten"]
    by_path = {e.path: declared_access(e.dependant) for e in endpoints(app)}
    assert by_path["/nested"].permissions == {Permission.AUDIT_READ}
    assert by_path["/router-level"].permissions == {Permission.USERS_READ}
    assert by_path["/public"] == Access(frozenset(), True)


def _app_without_lifespan(tmp_path: Path) -> FastAPI:
    # Building the app touches no database; only its lifespan does.
    return create_app(platform_settings(tmp_path, "sqlite+aiosqlite://", "http://127.0.0.1:9"))


def test_every_route_declares_a_permission_or_public(tmp_path: Path) -> None:
    app = _app_without_lifespan(tmp_path)
    assert len(endpoints(app)) >= 10, "too few routes found: is the app built?"
    assert undeclared(app) == [], "routes without require(...) or public()"


def test_the_pinned_answers_agree_with_role_permissions(tmp_path: Path) -> None:
    served = {(e.method, e.path): e for e in endpoints(_app_without_lifespan(tmp_path))}
    wrong = []
    for row in EXPECTED + EXPECTED_WHERE_PRESENT:
        method, path, role, allowed = row
        endpoint = served.get((method, path))
        if endpoint is None:
            if row in EXPECTED:
                wrong.append(f"{method} {path}: not served (is its router included?)")
            continue
        if role_may(role, declared_access(endpoint.dependant)) != allowed:
            wrong.append(f"{method} {path} as {role.value}: expected allowed={allowed}")
    assert wrong == []


# --- over HTTP -------------------------------------------------------------------------------


@dataclass
class Caller:
    """The app with ``authenticate`` replaced by whichever principal the test sets."""

    app: FastAPI
    client: httpx.AsyncClient
    principal: Principal | None = None

    async def call(self, endpoint: Endpoint, principal: Principal) -> httpx.Response:
        self.principal = principal
        # A minimal JSON body where the route takes one: the permission check runs before the
        # body is validated, so an allowed role sees 422 (or better), a denied one 403.
        body: dict[str, Any] | None = {} if endpoint.takes_body else None
        return await self.client.request(endpoint.method, concrete_path(endpoint), json=body)


@pytest.fixture
async def caller(platform: Platform) -> AsyncIterator[Caller]:
    app = create_app(platform.settings, platform.services)
    # Allowed calls run real handlers with made-up ids; a crash must answer 500, not abort.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as client,
    ):
        state = Caller(app, client)

        def current() -> Principal:
            assert state.principal is not None
            return state.principal

        app.dependency_overrides[authenticate] = current
        yield state


async def matrix_tenant(platform: Platform) -> str:
    name = await platform.tenant("matrix")
    async with platform.services.sessions() as session:
        return (await tenant_by_name(session, name)).id


def principal_of(tenant_id: str, role: Role, *, mfa: bool) -> Principal:
    return Principal(
        tenant_id=tenant_id,
        kind="user",
        id=uuid.uuid4().hex,  # fresh per call, so each audited denial names its call
        roles=frozenset({role}),
        mfa=mfa,
        session_id=uuid.uuid4().hex,
        amr=("pwd", "otp") if mfa else ("pwd",),
    )


def concrete_path(endpoint: Endpoint) -> str:
    values: dict[str, Any] = {}
    for name, convertor in endpoint.param_convertors.items():
        values[name] = 1 if isinstance(convertor, IntegerConvertor) else uuid.uuid4().hex
    return endpoint.path_format.format(**values)


def slug(response: httpx.Response) -> str:
    try:
        type_ = response.json().get("type", "")
    except (ValueError, AttributeError):
        return ""
    return str(type_).rsplit("/", 1)[-1]


def describe(endpoint: Endpoint, role: Role, response: httpx.Response) -> str:
    return f"{endpoint} as {role.value}: {response.status_code} {response.text[:200]}"


async def audited_denials(platform: Platform, tenant_id: str) -> set[tuple[str, str]]:
    async with platform.services.sessions() as session:
        records = await session.scalars(
            select(AuditEventRecord.record).where(
                AuditEventRecord.tenant_id == tenant_id,
                AuditEventRecord.event_type == "authz.decision",
                AuditEventRecord.outcome == "denied",
            )
        )
        events = [json.loads(record) for record in records]
    return {(e["actor"]["id"], e["data"].get("permission", "")) for e in events}


async def test_route_role_matrix(platform: Platform, caller: Caller) -> None:
    tenant_id = await matrix_tenant(platform)
    failures: list[str] = []

    def check(ok: bool, why: str) -> None:
        if not ok:
            failures.append(why)

    # (principal id, the permission its denial must name; "" where several were missing)
    denied: list[tuple[str, str]] = []
    answers: dict[tuple[str, str, Role], int] = {}
    served = endpoints(caller.app)
    for endpoint in served:
        access = declared_access(endpoint.dependant)
        check(access.declared, f"{endpoint}: declares neither require(...) nor public()")
        for role in Role:
            principal = principal_of(tenant_id, role, mfa=True)
            response = await caller.call(endpoint, principal)
            answers[(endpoint.method, endpoint.path, role)] = response.status_code
            if role_may(role, access):
                check(response.status_code != 403, describe(endpoint, role, response))
                continue
            check(
                response.status_code == 403 and slug(response) == "forbidden",
                describe(endpoint, role, response),
            )
            missing = sorted(access.permissions - ROLE_PERMISSIONS[role])
            denied.append((principal.id, missing[0] if len(missing) == 1 else ""))

    for row in EXPECTED + EXPECTED_WHERE_PRESENT:
        method, path, role, allowed = row
        status = answers.get((method, path, role))
        if status is None:
            check(row not in EXPECTED, f"{method} {path}: not served")
            continue
        check((status != 403) is allowed, f"{method} {path} as {role.value}: {status}")

    audited = await audited_denials(platform, tenant_id)
    audited_actors = {actor for actor, _ in audited}
    for actor, permission in denied:
        found = (actor, permission) in audited if permission else actor in audited_actors
        check(found, f"the denial of {actor} ({permission or 'several'}) is not audited")

    assert len(served) >= 10
    assert failures == [], "\n".join(failures)


async def test_administrative_permissions_need_a_second_factor(
    platform: Platform, caller: Caller
) -> None:
    tenant_id = await matrix_tenant(platform)
    failures: list[str] = []
    checked = 0
    for endpoint in endpoints(caller.app):
        access = declared_access(endpoint.dependant)
        if not access.permissions & MFA_REQUIRED:
            continue
        for role in Role:
            if not role_may(role, access):
                continue
            checked += 1
            response = await caller.call(endpoint, principal_of(tenant_id, role, mfa=False))
            if response.status_code != 403 or slug(response) != "mfa-required":
                failures.append(describe(endpoint, role, response))
    assert checked > 0
    assert failures == [], "\n".join(failures)
