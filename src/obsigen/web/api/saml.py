"""SAML 2.0 single sign-on: /auth/saml/{idp}/metadata, /login and /acs.

The ACS hands our tokens to a browser through a one-time code (303 to ``/ui/sso/complete``,
see :mod:`obsigen.web.sso`) and to other clients as JSON. Every refusal is a 401
``saml-refused`` problem and an audited ``auth.sso`` failure; garbage (bad base64, not XML,
too large) is a refusal like any other, never a 500.
"""

from __future__ import annotations

from fastapi import APIRouter, Form, Query, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse

from obsigen.db.federation_models import IdentityProvider
from obsigen.federation.idps import enabled_idp
from obsigen.federation.saml import SamlRefused, SamlSp
from obsigen.federation.saml_xml import MAX_DOCUMENT_BYTES
from obsigen.web.api.auth import TokensOut
from obsigen.web.auth import public, services_of
from obsigen.web.sso import (
    HANDOFF_DESCRIPTION,
    complete_sign_in,
    handoff,
    prefers_html,
    record_refusal,
)

router = APIRouter(tags=["sso"])

METADATA_MEDIA_TYPE = "application/samlmetadata+xml"
# The form field holds base64: 4/3 of the largest document we parse, plus line breaks.
_MAX_FIELD = (MAX_DOCUMENT_BYTES * 4) // 3 + 4096


class SamlTokensOut(TokensOut):
    # The path the sign-in was started for (GET /login?relay_state=...), as we stored it.
    relay_state: str | None = None


async def _sp(request: Request, idp_id: str) -> tuple[IdentityProvider, SamlSp]:
    services = services_of(request)
    async with services.sessions() as session:
        idp = await enabled_idp(session, idp_id, "saml")
    return idp, SamlSp(idp, services.settings.federation, services.auth.ephemeral)


@router.get("/auth/saml/{idp_id}/metadata", dependencies=[public()])
async def saml_metadata(idp_id: str, request: Request) -> Response:
    _, sp = await _sp(request, idp_id)
    return Response(content=await sp.metadata(), media_type=METADATA_MEDIA_TYPE)


@router.get("/auth/saml/{idp_id}/login", dependencies=[public()])
async def saml_login(
    idp_id: str,
    request: Request,
    relay_state: str | None = Query(default=None, max_length=512),
) -> RedirectResponse:
    _, sp = await _sp(request, idp_id)
    return RedirectResponse(await sp.login(relay_state), status_code=302)


@router.post(
    "/auth/saml/{idp_id}/acs",
    dependencies=[public()],
    response_model=SamlTokensOut,
    responses={303: {"description": HANDOFF_DESCRIPTION}},
)
async def saml_acs(
    idp_id: str,
    request: Request,
    saml_response: str = Form(alias="SAMLResponse", min_length=1, max_length=_MAX_FIELD),
    relay_state: str | None = Form(default=None, alias="RelayState", max_length=1024),
) -> Response:
    # The posted RelayState is not trusted (an IdP-initiated post chooses it freely): the one
    # returned is what we stored when the sign-in started.
    del relay_state
    idp, sp = await _sp(request, idp_id)
    try:
        signed_in = await sp.consume(saml_response)
    except SamlRefused as exc:
        await record_refusal(request, idp, "saml", exc.detail)
        raise
    tokens = await complete_sign_in(request, idp, signed_in.identity)
    if prefers_html(request):
        return await handoff(request, idp, tokens, signed_in.relay_state)
    body = SamlTokensOut(**tokens.model_dump(), relay_state=signed_in.relay_state)
    return JSONResponse(body.model_dump())
