"""OIDC single sign-on: /auth/oidc/{idp}/login and /auth/oidc/{idp}/callback.

``login`` sends the browser to the IdP with a fresh flow and sets a cookie binding the flow to
this browser (login CSRF: a callback URL captured from someone else's sign-in does not work in
another browser). ``callback`` verifies the IdP's answer and hands our tokens over: to a
browser through a one-time code (303 to ``/ui/sso/complete``, see :mod:`obsigen.web.sso`), to
other clients as JSON. Every refusal is a 401 ``oidc-refused`` problem (502
``idp-unreachable`` when the IdP could not be asked) and an ``auth.sso`` failure in the audit.
"""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from obsigen.db.federation_models import IdentityProvider
from obsigen.federation.idps import enabled_idp
from obsigen.federation.oidc import OidcRelyingParty
from obsigen.federation.oidc_errors import IdpUnreachable, OidcRefused
from obsigen.web.api.auth import TokensOut
from obsigen.web.auth import public, services_of
from obsigen.web.sso import (
    HANDOFF_DESCRIPTION,
    complete_sign_in,
    handoff,
    prefers_html,
    record_refusal,
)

router = APIRouter(tags=["federation"])

FLOW_COOKIE = "obsigen_oidc_flow"
COOKIE_PATH = "/auth/oidc/"
# Parameters an attacker could repeat hoping that we and a proxy read different copies.
_SINGLE = ("state", "code", "iss", "error")


class OidcTokensOut(TokensOut):
    # Where the browser wanted to go when it started the sign-in (a path on this server).
    return_to: str | None = None


def relying_party(request: Request) -> OidcRelyingParty:
    """The process's relying party, made at first use (its caches live as long as the app)."""
    state = request.app.state
    party: OidcRelyingParty | None = getattr(state, "oidc_relying_party", None)
    if party is None:
        services = services_of(request)
        party = OidcRelyingParty(services.settings.federation, services.auth.ephemeral)
        state.oidc_relying_party = party
    return party


async def _idp(request: Request, idp_id: str) -> IdentityProvider:
    async with services_of(request).sessions() as session:
        return await enabled_idp(session, idp_id, "oidc")


@router.get("/auth/oidc/{idp_id}/login", dependencies=[public()])
async def oidc_login(
    idp_id: str,
    request: Request,
    return_to: str | None = Query(default=None, max_length=500),
) -> RedirectResponse:
    idp = await _idp(request, idp_id)
    party = relying_party(request)
    try:
        flow = await party.begin(idp, return_to)
    except (OidcRefused, IdpUnreachable) as exc:
        await record_refusal(request, idp, "oidc", exc.detail)
        raise
    response = RedirectResponse(flow.authorization_url, status_code=302)
    response.set_cookie(
        FLOW_COOKIE,
        flow.browser_binding,
        max_age=party.settings.flow_ttl_s,
        path=COOKIE_PATH,
        secure=party.settings.public_url.startswith("https://"),
        httponly=True,
        # Lax: the IdP's redirect back is a top-level GET navigation, which Lax lets through.
        samesite="lax",
    )
    return response


def _callback_params(request: Request) -> dict[str, str]:
    query = request.query_params
    repeated = [name for name in _SINGLE if len(query.getlist(name)) > 1]
    if repeated:
        raise OidcRefused(f"repeated parameters in the authorization response: {repeated}")
    return dict(query.items())


@router.get(
    "/auth/oidc/{idp_id}/callback",
    dependencies=[public()],
    response_model=OidcTokensOut,
    responses={303: {"description": HANDOFF_DESCRIPTION}},
)
async def oidc_callback(idp_id: str, request: Request) -> Response:
    idp = await _idp(request, idp_id)
    try:
        result = await relying_party(request).finish(
            idp, _callback_params(request), request.cookies.get(FLOW_COOKIE)
        )
    except (OidcRefused, IdpUnreachable) as exc:
        await record_refusal(request, idp, "oidc", exc.detail)
        raise
    tokens = await complete_sign_in(request, idp, result.identity)
    response: Response
    if prefers_html(request):
        response = await handoff(request, idp, tokens, result.return_to)
    else:
        body = OidcTokensOut(**tokens.model_dump(), return_to=result.return_to)
        response = JSONResponse(body.model_dump())
    response.delete_cookie(FLOW_COOKIE, path=COOKIE_PATH)
    return response
