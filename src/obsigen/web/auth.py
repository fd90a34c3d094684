"""Authentication at the edge: ``Authorization: Bearer <API key>`` (JWT sessions: issue #3)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from obsigen.authz.permissions import Permission
from obsigen.authz.principal import Principal
from obsigen.errors import Forbidden, Unauthenticated
from obsigen.identity.apikeys import authenticate_api_key, looks_like_api_key
from obsigen.services import Services


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def authenticate(request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("send Authorization: Bearer <token>")
    principal = None
    if looks_like_api_key(token):
        async with services_of(request).sessions() as session:
            principal = await authenticate_api_key(session, token)
    if principal is None:
        raise Unauthenticated("invalid or expired credentials")
    request.state.principal = principal
    return principal


CurrentPrincipal = Annotated[Principal, Depends(authenticate)]


def require(permission: Permission):  # type: ignore[no-untyped-def]
    """A dependency that lets the request through only with ``permission`` (deny by default)."""

    async def check(principal: CurrentPrincipal) -> Principal:
        if not principal.can(permission):
            raise Forbidden(f"requires {permission.value}")
        return principal

    return Depends(check)
