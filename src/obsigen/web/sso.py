"""The common end of every SSO callback (OIDC, SAML): resolve the user, start a session, audit,
answer with our tokens. Protocol routes call :func:`complete_sign_in` once they have verified
the IdP's assertion, and :func:`record_refusal` when they refuse one."""

from __future__ import annotations

from fastapi import Request

from obsigen.db.federation_models import IdentityProvider
from obsigen.federation.signin import (
    FederatedIdentity,
    refusal_event,
    resolve_user,
    sign_in_events,
)
from obsigen.web.api.auth import TokensOut, issue_tokens
from obsigen.web.auth import services_of


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


async def complete_sign_in(
    request: Request, idp: IdentityProvider, identity: FederatedIdentity
) -> TokensOut:
    services = services_of(request)
    refused: Exception | None = None
    # Audit records are written after the transaction ends (SQLite: one writer at a time).
    async with services.sessions.begin() as session:
        try:
            result = await resolve_user(session, idp, identity)
        except Exception as exc:  # noqa: BLE001 - recorded, then re-raised below
            refused = exc
    if refused is not None:
        await record_refusal(request, idp, identity.protocol, str(refused))
        raise refused
    auth = services.auth
    record, refresh_token = await auth.manager.start(
        tenant_id=idp.tenant_id, user_id=result.user_id, amr=result.amr
    )
    for event in sign_in_events(idp, identity, result, record.session_id, client_address(request)):
        await services.audit.record(event)
    return await issue_tokens(auth, record, refresh_token)


async def record_refusal(
    request: Request, idp: IdentityProvider, protocol: str, reason: str
) -> None:
    await services_of(request).audit.record(
        refusal_event(idp, protocol, reason, client_address(request))
    )
