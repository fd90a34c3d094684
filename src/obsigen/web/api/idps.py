"""Identity providers and group-to-role mappings (``/api/v1/idps``, ``/api/v1/group-mappings``)
for admins with MFA, IdP discovery by e-mail domain for the login page (``/auth/sso/discover``)
and the trade of an SSO sign-in's one-time code for its tokens (``/auth/sso/exchange``)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from obsigen.authz.permissions import Permission
from obsigen.authz.principal import Principal
from obsigen.authz.roles import AdminChange
from obsigen.db.federation_models import IdentityProvider
from obsigen.db.models import Tenant
from obsigen.federation.idps import (
    IdpInput,
    check_source,
    create_idp,
    create_mapping,
    delete_idp,
    delete_mapping,
    describe,
    discover,
    get_idp,
    list_idps,
    list_mappings,
    update_idp,
)
from obsigen.web.api.auth import TokensOut
from obsigen.web.auth import public, require, services_of
from obsigen.web.sso import HANDOFF_COOKIE, HANDOFF_COOKIE_PATH, client_address, sso_codes

router = APIRouter(tags=["federation"])


class IdpIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slug: str = Field(min_length=1, max_length=63)
    protocol: Literal["oidc", "saml"]
    display_name: str = Field(min_length=1, max_length=100)
    domains: list[str] = Field(default_factory=list, max_length=50)
    config: dict[str, Any]
    enabled: bool = True
    jit_provisioning: bool = False
    trust_idp_mfa: bool = False
    default_role: str | None = Field(default=None, max_length=32)


class IdpPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    display_name: str | None = Field(default=None, min_length=1, max_length=100)
    domains: list[str] | None = Field(default=None, max_length=50)
    config: dict[str, Any] | None = None
    enabled: bool | None = None
    jit_provisioning: bool | None = None
    trust_idp_mfa: bool | None = None
    default_role: str | None = Field(default=None, max_length=32)


class IdpOut(BaseModel):
    id: str
    slug: str
    protocol: str
    display_name: str
    domains: list[str]
    enabled: bool
    jit_provisioning: bool
    trust_idp_mfa: bool
    default_role: str | None
    config: dict[str, Any]
    # Where browsers start a sign-in with this IdP, and (SAML) where its metadata is.
    login_url: str
    metadata_url: str | None


class IdpList(BaseModel):
    data: list[IdpOut]


class MappingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str = Field(min_length=1, max_length=40)
    group: str = Field(min_length=1, max_length=255)
    role: str = Field(min_length=1, max_length=32)


class MappingOut(BaseModel):
    id: str
    source: str
    group: str
    role: str


class MappingList(BaseModel):
    data: list[MappingOut]


class DiscoveredIdp(BaseModel):
    id: str
    slug: str
    protocol: str
    display_name: str
    login_url: str


class DiscoveryOut(BaseModel):
    data: list[DiscoveredIdp]


class SsoExchangeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=1, max_length=128)
    tenant: str = Field(min_length=1, max_length=100)


class SsoTokensOut(TokensOut):
    # The path the sign-in was started for (OIDC return_to, SAML relay_state), as we stored it.
    return_to: str | None = None


def _login_path(idp: IdentityProvider) -> str:
    return f"/auth/{idp.protocol}/{idp.id}/login"


def _out(idp: IdentityProvider) -> IdpOut:
    return IdpOut(
        **describe(idp),
        login_url=_login_path(idp),
        metadata_url=f"/auth/saml/{idp.id}/metadata" if idp.protocol == "saml" else None,
    )


async def _record(request: Request, actor: Principal, change: AdminChange) -> None:
    await services_of(request).audit.record(change.event(actor, client_address(request)))


@router.get("/api/v1/idps")
async def idps_list(
    request: Request, principal: Principal = require(Permission.FEDERATION_MANAGE)
) -> IdpList:
    async with services_of(request).sessions() as session:
        rows = await list_idps(session, principal.tenant_id)
    return IdpList(data=[_out(idp) for idp in rows])


@router.post("/api/v1/idps", status_code=201)
async def idps_create(
    body: IdpIn, request: Request, principal: Principal = require(Permission.FEDERATION_MANAGE)
) -> IdpOut:
    async with services_of(request).sessions.begin() as session:
        idp, change = await create_idp(session, principal, IdpInput(**body.model_dump()))
        out = _out(idp)
    await _record(request, principal, change)
    return out


@router.get("/api/v1/idps/{idp_id}")
async def idps_get(
    idp_id: str, request: Request, principal: Principal = require(Permission.FEDERATION_MANAGE)
) -> IdpOut:
    async with services_of(request).sessions() as session:
        return _out(await get_idp(session, principal.tenant_id, idp_id))


@router.patch("/api/v1/idps/{idp_id}")
async def idps_update(
    idp_id: str,
    body: IdpPatch,
    request: Request,
    principal: Principal = require(Permission.FEDERATION_MANAGE),
) -> IdpOut:
    async with services_of(request).sessions.begin() as session:
        idp, change = await update_idp(
            session, principal, idp_id, body.model_dump(exclude_unset=True)
        )
        out = _out(idp)
    await _record(request, principal, change)
    return out


@router.delete("/api/v1/idps/{idp_id}", status_code=204)
async def idps_delete(
    idp_id: str, request: Request, principal: Principal = require(Permission.FEDERATION_MANAGE)
) -> Response:
    async with services_of(request).sessions.begin() as session:
        change = await delete_idp(session, principal, idp_id)
    await _record(request, principal, change)
    return Response(status_code=204)


@router.get("/api/v1/group-mappings")
async def mappings_list(
    request: Request,
    source: str | None = Query(default=None, max_length=40),
    principal: Principal = require(Permission.FEDERATION_MANAGE),
) -> MappingList:
    async with services_of(request).sessions() as session:
        rows = await list_mappings(
            session, principal.tenant_id, check_source(source) if source else None
        )
    return MappingList(
        data=[MappingOut(id=r.id, source=r.source, group=r.group_name, role=r.role) for r in rows]
    )


@router.post("/api/v1/group-mappings", status_code=201)
async def mappings_create(
    body: MappingIn,
    request: Request,
    principal: Principal = require(Permission.FEDERATION_MANAGE),
) -> MappingOut:
    async with services_of(request).sessions.begin() as session:
        row, change = await create_mapping(session, principal, body.source, body.group, body.role)
        out = MappingOut(id=row.id, source=row.source, group=row.group_name, role=row.role)
    await _record(request, principal, change)
    return out


@router.delete("/api/v1/group-mappings/{mapping_id}", status_code=204)
async def mappings_delete(
    mapping_id: str,
    request: Request,
    principal: Principal = require(Permission.FEDERATION_MANAGE),
) -> Response:
    async with services_of(request).sessions.begin() as session:
        change = await delete_mapping(session, principal, mapping_id)
    await _record(request, principal, change)
    return Response(status_code=204)


@router.get("/auth/sso/discover", dependencies=[public()])
async def sso_discover(
    request: Request,
    tenant: str = Query(min_length=1, max_length=100),
    email: str = Query(min_length=3, max_length=254),
) -> DiscoveryOut:
    """The sign-in buttons for this e-mail: the same empty answer for an unknown tenant, an
    unknown domain and a tenant without IdPs, so it tells nobody which tenants exist."""
    async with services_of(request).sessions() as session:
        rows = await discover(session, tenant, email)
    return DiscoveryOut(
        data=[
            DiscoveredIdp(
                id=idp.id,
                slug=idp.slug,
                protocol=idp.protocol,
                display_name=idp.display_name,
                login_url=_login_path(idp),
            )
            for idp in rows
        ]
    )


@router.post("/auth/sso/exchange", dependencies=[public()])
async def sso_exchange(body: SsoExchangeIn, request: Request, response: Response) -> SsoTokensOut:
    """The tokens of an SSO sign-in, once, for the code the callback put in the UI's URL
    fragment; 400 ``sso-code-invalid`` for any other code, a second use, a code past its
    minute, another tenant's or one presented without the cookie of the browser it went to."""
    async with services_of(request).sessions() as session:
        tenant_id = await session.scalar(select(Tenant.id).where(Tenant.name == body.tenant))
    payload = await sso_codes(request).redeem(
        body.code, tenant_id, request.cookies.get(HANDOFF_COOKIE)
    )
    response.delete_cookie(HANDOFF_COOKIE, path=HANDOFF_COOKIE_PATH)
    tokens = TokensOut.model_validate(payload["tokens"])
    return SsoTokensOut(**tokens.model_dump(), return_to=payload.get("return_to"))
