"""The common end of every SSO callback (OIDC, SAML): resolve the user, start a session, audit,
hand the tokens over. Protocol routes call :func:`complete_sign_in` once they have verified
the IdP's assertion, and :func:`record_refusal` when they refuse one.

A browser reaches the callback by a top-level navigation, so it cannot read a JSON body: it is
redirected (303) to the web UI with a one-time code in the URL fragment, which the page trades
for the tokens at ``POST /auth/sso/exchange`` (:mod:`obsigen.federation.sso_codes`). A client
that asks for JSON (any ``Accept`` that does not prefer ``text/html``, e.g. an API client or a
test) gets the tokens in the body as before.
"""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import RedirectResponse
from sqlalchemy import select

from obsigen.db.federation_models import IdentityProvider
from obsigen.db.models import Tenant
from obsigen.federation.signin import (
    FederatedIdentity,
    refusal_event,
    resolve_user,
    sign_in_events,
)
from obsigen.federation.sso_codes import CODE_TTL_S, SsoCodes
from obsigen.web.api.auth import TokensOut, issue_tokens
from obsigen.web.auth import services_of

COMPLETE_PATH = "/ui/sso/complete"
# Binds a one-time code to the browser that received it; sent only to the exchange route.
HANDOFF_COOKIE = "obsigen_sso_handoff"
HANDOFF_COOKIE_PATH = "/auth/sso/exchange"
HANDOFF_DESCRIPTION = (
    "A browser (Accept preferring text/html) is sent to /ui/sso/complete#code=...: a one-time "
    "code for POST /auth/sso/exchange"
)


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


def _quality(accept: str, media: str) -> float:
    """The q the Accept header gives ``media``: from its most specific matching range."""
    major = media.split("/", 1)[0]
    specificity, quality = -1, 0.0
    for part in accept.split(","):
        fields = [f.strip() for f in part.split(";")]
        found = fields[0].lower()
        rank = {media: 2, f"{major}/*": 1, "*/*": 0}.get(found)
        if rank is None or rank <= specificity:
            continue
        q = 1.0
        for field in fields[1:]:
            name, _, value = field.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        specificity, quality = rank, (q if 0.0 <= q <= 1.0 else 0.0)
    return quality


def prefers_html(request: Request) -> bool:
    """True for a browser navigation; a tie (``*/*``, no header) keeps the JSON answer."""
    accept = request.headers.get("accept", "")
    return _quality(accept, "text/html") > _quality(accept, "application/json")


def sso_codes(request: Request) -> SsoCodes:
    return SsoCodes(services_of(request).auth.ephemeral)


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


async def handoff(
    request: Request, idp: IdentityProvider, tokens: TokensOut, return_to: str | None
) -> RedirectResponse:
    """303 to the UI's completion page with a one-time code for ``tokens`` in the fragment."""
    services = services_of(request)
    async with services.sessions() as session:
        tenant = await session.scalar(select(Tenant.name).where(Tenant.id == idp.tenant_id))
    issued = await sso_codes(request).issue(
        idp.tenant_id, {"tokens": tokens.model_dump(), "return_to": return_to}
    )
    fragment = urlencode({"code": issued.code, "tenant": tenant or ""})
    response = RedirectResponse(f"{COMPLETE_PATH}#{fragment}", status_code=303)
    response.set_cookie(
        HANDOFF_COOKIE,
        issued.browser_binding,
        max_age=CODE_TTL_S,
        path=HANDOFF_COOKIE_PATH,
        secure=services.settings.federation.public_url.startswith("https://"),
        httponly=True,
        # Lax: set on the IdP's top-level navigation, sent with the page's same-site fetch.
        samesite="lax",
    )
    return response


async def record_refusal(
    request: Request, idp: IdentityProvider, protocol: str, reason: str
) -> None:
    await services_of(request).audit.record(
        refusal_event(idp, protocol, reason, client_address(request))
    )
