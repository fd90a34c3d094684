"""Roles and users: ``/api/v1/roles`` and ``/api/v1/users``.

The rules live in ``obsigen.authz.roles``; these routes parse, run one transaction, and record
the outcome: a change as ``admin.change`` after it commits, a refusal as ``authz.decision``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from obsigen.authz.permissions import Permission
from obsigen.authz.principal import Principal
from obsigen.authz.roles import (
    TENANT_SCOPE,
    AdminChange,
    RoleInfo,
    access_principal,
    bindings_of,
    create_custom_role,
    delete_custom_role,
    denial_event,
    grant_role,
    list_roles,
    revoke_role,
    stored_permissions,
    update_custom_role,
)
from obsigen.errors import Forbidden
from obsigen.identity.users import list_users
from obsigen.web.auth import require, services_of

router = APIRouter(prefix="/api/v1", tags=["roles"])


class RoleOut(BaseModel):
    name: str
    description: str
    builtin: bool
    permissions: list[str]
    # Whether holding this role means administrative permissions (sessions need MFA; API keys
    # cannot hold it).
    mfa_required: bool


class RoleIn(BaseModel):
    name: str = Field(max_length=32)
    description: str = Field(default="", max_length=200)
    permissions: list[str] = Field(max_length=64)


class RolePatch(BaseModel):
    description: str | None = Field(default=None, max_length=200)
    permissions: list[str] | None = Field(default=None, max_length=64)


class BindingOut(BaseModel):
    role: str
    scope: str


class UserOut(BaseModel):
    id: str
    email: str
    status: str
    roles: list[BindingOut]


class GrantIn(BaseModel):
    role: str = Field(max_length=32)
    scope: str = Field(default=TENANT_SCOPE, max_length=64)


def _role(info: RoleInfo) -> RoleOut:
    return RoleOut(
        name=info.name,
        description=info.description,
        builtin=info.builtin,
        permissions=sorted(info.permissions),
        mfa_required=info.needs_mfa,
    )


def _client(request: Request) -> str | None:
    return request.client.host if request.client else None


async def _change(
    request: Request,
    principal: Principal,
    target: dict[str, str],
    action: str,
    work: Callable[[AsyncSession], Awaitable[AdminChange]],
) -> AdminChange:
    services = services_of(request)
    try:
        async with services.sessions.begin() as session:
            change = await work(session)
    except Forbidden as exc:
        await services.audit.record(
            denial_event(principal, action, target, exc.detail, _client(request))
        )
        raise
    await services.audit.record(change.event(principal, _client(request)))
    return change


@router.get("/roles")
async def roles(
    request: Request, principal: Principal = require(Permission.USERS_READ)
) -> list[RoleOut]:
    async with services_of(request).sessions() as session:
        return [_role(info) for info in await list_roles(session, principal.tenant_id)]


@router.post("/roles", status_code=201)
async def create_role(
    body: RoleIn, request: Request, principal: Principal = require(Permission.ROLES_MANAGE)
) -> RoleOut:
    change = await _change(
        request,
        principal,
        {"kind": "role", "id": body.name},
        "role.create",
        lambda session: create_custom_role(
            session, principal, body.name, body.permissions, body.description
        ),
    )
    return _custom_role(change.after)


@router.patch("/roles/{name}")
async def update_role(
    name: str,
    body: RolePatch,
    request: Request,
    principal: Principal = require(Permission.ROLES_MANAGE),
) -> RoleOut:
    change = await _change(
        request,
        principal,
        {"kind": "role", "id": name},
        "role.update",
        lambda session: update_custom_role(
            session, principal, name, permissions=body.permissions, description=body.description
        ),
    )
    return _custom_role(change.after)


@router.delete("/roles/{name}", status_code=204)
async def delete_role(
    name: str, request: Request, principal: Principal = require(Permission.ROLES_MANAGE)
) -> Response:
    await _change(
        request,
        principal,
        {"kind": "role", "id": name},
        "role.delete",
        lambda session: delete_custom_role(session, principal, name),
    )
    return Response(status_code=204)


def _custom_role(document: dict[str, Any]) -> RoleOut:
    permissions = stored_permissions(document["permissions"])
    return _role(RoleInfo(document["name"], permissions, False, document["description"]))


@router.get("/users")
async def users(
    request: Request,
    principal: Principal = require(Permission.USERS_READ),
    limit: int = Query(default=100, ge=1, le=500),
    after: str | None = Query(default=None, max_length=254),
) -> list[UserOut]:
    async with services_of(request).sessions() as session:
        listed = await list_users(session, principal.tenant_id, limit, after)
    return [
        UserOut(
            id=item.user.id,
            email=item.user.email,
            status=item.user.status,
            roles=[BindingOut(role=role, scope=scope) for role, scope in item.bindings],
        )
        for item in listed
    ]


@router.post("/users/{user_id}/roles", status_code=201)
async def grant(
    user_id: str,
    body: GrantIn,
    request: Request,
    principal: Principal = require(Permission.ROLES_MANAGE),
) -> list[BindingOut]:
    change = await _change(
        request,
        principal,
        {"kind": "user", "id": user_id},
        "role.grant",
        lambda session: grant_role(session, principal, "user", user_id, body.role, body.scope),
    )
    return [BindingOut.model_validate(binding) for binding in change.after]


@router.delete("/users/{user_id}/roles/{role}", status_code=204)
async def revoke(
    user_id: str,
    role: str,
    request: Request,
    principal: Principal = require(Permission.ROLES_MANAGE),
    scope: str = Query(default=TENANT_SCOPE, max_length=64),
) -> Response:
    await _change(
        request,
        principal,
        {"kind": "user", "id": user_id},
        "role.revoke",
        lambda session: revoke_role(session, principal, "user", user_id, role, scope),
    )
    return Response(status_code=204)


@router.get("/users/{user_id}/roles")
async def user_roles(
    user_id: str, request: Request, principal: Principal = require(Permission.USERS_READ)
) -> list[BindingOut]:
    async with services_of(request).sessions() as session:
        await access_principal(session, principal, "user", user_id)
        found = await bindings_of(session, principal.tenant_id, "user", user_id)
    return [BindingOut.model_validate(binding) for binding in found]
