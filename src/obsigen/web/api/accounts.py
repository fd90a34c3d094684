"""Accounts for a tenant's admins: create, deactivate and reactivate users
(``/api/v1/users``), list, create and revoke API keys (``/api/v1/api-keys``).

The rules live in ``obsigen.identity.accounts``; these routes parse, run one transaction and
record the outcome: a change as ``admin.change`` after it commits, a refusal as
``authz.decision``. Secrets (a generated password, a TOTP URI, a new key) are in the one
response that creates them and nowhere else: not in the audit trail, not in any later answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TypeVar

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession

from obsigen.authz.permissions import Permission
from obsigen.authz.principal import Principal
from obsigen.authz.roles import AdminChange, bindings_of, denial_event
from obsigen.db.base import utcnow
from obsigen.db.models import ApiKey, User
from obsigen.errors import Forbidden
from obsigen.identity.accounts import (
    KeyListing,
    create_account,
    create_key,
    list_keys,
    revoke_key,
    set_active,
)
from obsigen.web.api.roles import BindingOut
from obsigen.web.auth import require, services_of
from obsigen.web.sso import client_address

router = APIRouter(prefix="/api/v1", tags=["accounts"])

T = TypeVar("T")
# What `obsigen apikey create` gives a key without --expires-in (or the maximum, if shorter).
DEFAULT_KEY_DAYS = 90


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(min_length=3, max_length=254)
    role: str = Field(min_length=1, max_length=32)
    # None: the server generates a strong one and returns it once.
    password: str | None = Field(default=None, min_length=12, max_length=256)


class AccountOut(BaseModel):
    id: str
    email: str
    status: str
    roles: list[BindingOut]


class CreatedUserOut(AccountOut):
    # Only when the server generated it; shown this once.
    initial_password: str | None
    # Only for a role that needs MFA: the TOTP enrolment URI, shown this once.
    otpauth_uri: str | None


class StatusOut(AccountOut):
    api_keys_revoked: int
    sessions_ended: int


class ApiKeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    role: str = Field(default="member", min_length=1, max_length=32)
    # At most auth.apikey_max_days (a longer one is refused); None: 90 days or that maximum.
    expires_in_days: int | None = Field(default=None, ge=1, le=36_500)


class ApiKeyOut(BaseModel):
    id: str
    name: str
    roles: list[str]
    state: str  # active | expired | revoked
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    # The user the key acts for: deactivating that user revokes the key.
    owner_user_id: str | None


class ApiKeyList(BaseModel):
    data: list[ApiKeyOut]
    max_days: int


class CreatedApiKeyOut(ApiKeyOut):
    # The key itself, shown this once; only its digest is stored.
    key: str


def _key_out(listing: KeyListing, now: datetime) -> ApiKeyOut:
    key: ApiKey = listing.api_key
    return ApiKeyOut(
        id=key.id,
        name=key.name,
        roles=listing.roles,
        state=listing.state(now),
        created_at=key.created_at,
        expires_at=key.expires_at,
        revoked_at=key.revoked_at,
        last_used_at=key.last_used_at,
        owner_user_id=key.owner_user_id,
    )


async def _change(
    request: Request,
    principal: Principal,
    target: dict[str, str],
    action: str,
    work: Callable[[AsyncSession], Awaitable[tuple[T, AdminChange]]],
) -> tuple[T, AdminChange]:
    """Runs ``work`` in one transaction; audits a refusal at once and a change after commit."""
    services = services_of(request)
    try:
        async with services.sessions.begin() as session:
            result, change = await work(session)
    except Forbidden as exc:
        await services.audit.record(
            denial_event(principal, action, target, exc.detail, client_address(request))
        )
        raise
    return result, change


async def _record(request: Request, principal: Principal, change: AdminChange) -> None:
    await services_of(request).audit.record(change.event(principal, client_address(request)))


async def _account(session: AsyncSession, user: User) -> AccountOut:
    bindings = await bindings_of(session, user.tenant_id, "user", user.id)
    return AccountOut(
        id=user.id,
        email=user.email,
        status=user.status,
        roles=[BindingOut.model_validate(b) for b in bindings],
    )


@router.post("/users", status_code=201)
async def users_create(
    body: UserIn, request: Request, principal: Principal = require(Permission.USERS_MANAGE)
) -> CreatedUserOut:
    async def work(session: AsyncSession) -> tuple[CreatedUserOut, AdminChange]:
        made = await create_account(session, principal, body.email, body.role, body.password)
        out = CreatedUserOut(
            **(await _account(session, made.user)).model_dump(),
            initial_password=made.initial_password,
            otpauth_uri=made.otpauth_uri,
        )
        return out, made.change

    target = {"kind": "user", "id": body.email[:200]}
    out, change = await _change(request, principal, target, "user.create", work)
    await _record(request, principal, change)
    return out


async def _set_active(
    request: Request, principal: Principal, user_id: str, active: bool
) -> StatusOut:
    services = services_of(request)
    manager = services.auth.manager
    ended = 0

    async def work(session: AsyncSession) -> tuple[AccountOut, AdminChange]:
        nonlocal ended
        user, change = await set_active(session, principal, user_id, active)
        if not active:
            # Before the commit: nothing the user's sessions do can land after it.
            ended += await manager.end_all(principal.tenant_id, user.id)
        return await _account(session, user), change

    action = "user.reactivate" if active else "user.deactivate"
    target = {"kind": "user", "id": user_id}
    account, change = await _change(request, principal, target, action, work)
    if not active:
        # And after it: a login that slipped in while the user still read as active ends too.
        ended += await manager.end_all(principal.tenant_id, user_id)
        change = replace(change, details={**change.details, "sessions_ended": str(ended)})
    await _record(request, principal, change)
    return StatusOut(
        **account.model_dump(),
        api_keys_revoked=int(change.details.get("api_keys_revoked", "0")),
        sessions_ended=ended,
    )


@router.post("/users/{user_id}/deactivate")
async def users_deactivate(
    user_id: str, request: Request, principal: Principal = require(Permission.USERS_MANAGE)
) -> StatusOut:
    """Status inactive; the user's sessions end and API keys are revoked at once."""
    return await _set_active(request, principal, user_id, active=False)


@router.post("/users/{user_id}/reactivate")
async def users_reactivate(
    user_id: str, request: Request, principal: Principal = require(Permission.USERS_MANAGE)
) -> StatusOut:
    """Status active again; revoked keys stay revoked (make new ones)."""
    return await _set_active(request, principal, user_id, active=True)


@router.get("/api-keys")
async def api_keys_list(
    request: Request,
    principal: Principal = require(Permission.APIKEYS_MANAGE),
    include_revoked: bool = Query(default=False),
) -> ApiKeyList:
    services = services_of(request)
    async with services.sessions() as session:
        listed = await list_keys(session, principal.tenant_id, include_revoked)
    now = utcnow()
    return ApiKeyList(
        data=[_key_out(item, now) for item in listed],
        max_days=services.settings.auth.apikey_max_days,
    )


@router.post("/api-keys", status_code=201)
async def api_keys_create(
    body: ApiKeyIn, request: Request, principal: Principal = require(Permission.APIKEYS_MANAGE)
) -> CreatedApiKeyOut:
    max_age = timedelta(days=services_of(request).settings.auth.apikey_max_days)
    lifetime = (
        timedelta(days=body.expires_in_days)
        if body.expires_in_days is not None
        else min(timedelta(days=DEFAULT_KEY_DAYS), max_age)
    )

    async def work(session: AsyncSession) -> tuple[CreatedApiKeyOut, AdminChange]:
        created, change = await create_key(
            session, principal, body.name, body.role, lifetime, max_age=max_age
        )
        listing = KeyListing(created.api_key, [body.role])
        out = CreatedApiKeyOut(**_key_out(listing, utcnow()).model_dump(), key=created.key)
        return out, change

    target = {"kind": "apikey", "id": body.name[:200]}
    out, change = await _change(request, principal, target, "apikey.create", work)
    await _record(request, principal, change)
    return out


@router.delete("/api-keys/{api_key_id}", status_code=204)
async def api_keys_revoke(
    api_key_id: str, request: Request, principal: Principal = require(Permission.APIKEYS_MANAGE)
) -> Response:
    async def work(session: AsyncSession) -> tuple[None, AdminChange]:
        return None, await revoke_key(session, principal, api_key_id)

    target = {"kind": "apikey", "id": api_key_id}
    _, change = await _change(request, principal, target, "apikey.revoke", work)
    await _record(request, principal, change)
    return Response(status_code=204)
