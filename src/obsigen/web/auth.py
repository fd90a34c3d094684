"""Authentication and authorisation at the web edge.

``Authorization: Bearer <token>`` carries either an API key (``obs_...``) or a session access
token (a JWT signed by our key provider). Every route declares what it needs: ``require(P)``
for a permission, or ``public()`` for the few that need no caller. The route x role matrix
test refuses a route that declares neither.

A permission in ``MFA_REQUIRED`` also needs a session that proved a second factor; without
one the answer is 403 ``mfa-required`` (step up), not a plain denial. Every denial is audited.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Depends, Request

from obsigen.audit.events import AuditEvent, actor_of
from obsigen.authz.permissions import Permission, requires_mfa
from obsigen.authz.principal import Principal
from obsigen.errors import Forbidden, MfaRequired, Unauthenticated
from obsigen.identity.apikeys import authenticate_api_key, looks_like_api_key
from obsigen.ratelimit.middleware import enforce_rate_limits
from obsigen.services import Services

log = logging.getLogger(__name__)


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("send Authorization: Bearer <token>")
    return token


async def authenticate(request: Request) -> Principal:
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    token = bearer_token(request)
    services = services_of(request)
    principal = None
    if looks_like_api_key(token):
        max_age = timedelta(days=services.settings.auth.apikey_max_days)
        async with services.sessions() as session:
            principal = await authenticate_api_key(session, token, max_age=max_age)
    else:
        principal = await services.authenticator.authenticate(token)
    if principal is None:
        raise Unauthenticated("invalid or expired credentials")
    request.state.principal = principal
    # Limits are keyed by the caller, so they apply once it is known (and before any work).
    await enforce_rate_limits(request, principal)
    return principal


CurrentPrincipal = Annotated[Principal, Depends(authenticate)]


async def _audit_denial(
    request: Request, principal: Principal, permission: Permission, reason: str
) -> None:
    client = request.client.host if request.client else None
    event = AuditEvent(
        type="authz.decision",
        tenant_id=principal.tenant_id,
        actor=actor_of(principal),
        outcome="denied",
        source_address=client,
        target={"kind": "route", "id": f"{request.method} {request.url.path}"[:200]},
        data={"permission": permission.value, "reason": reason},
    )
    try:
        await services_of(request).audit.record(event)
    except Exception:  # the denial stands whether or not the record could be written
        log.exception("could not audit an authorisation denial")


def require(permission: Permission) -> Any:
    """A dependency that lets the request through only with ``permission`` (deny by default)."""

    async def check(request: Request, principal: CurrentPrincipal) -> Principal:
        if not principal.can(permission):
            await _audit_denial(request, principal, permission, "not-granted")
            raise Forbidden(f"requires {permission.value}")
        if requires_mfa(permission) and not principal.mfa:
            await _audit_denial(request, principal, permission, "mfa-required")
            raise MfaRequired(
                f"{permission.value} needs a session with a second factor: step up and retry"
            )
        return principal

    check.obsigen_permission = permission  # type: ignore[attr-defined]
    return Depends(check)


def public() -> Any:
    """Declares a route that needs no caller (health, JWKS, login)."""

    async def no_caller(request: Request) -> None:
        # No caller to key limits by: the client address stands in.
        await enforce_rate_limits(request, None)

    no_caller.obsigen_public = True  # type: ignore[attr-defined]
    return Depends(no_caller)
