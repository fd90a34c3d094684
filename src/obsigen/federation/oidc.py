"""The OIDC relying party: authorization code flow with PKCE (S256), state and nonce spent once.

``begin`` makes a flow: random ``state``, ``nonce`` and PKCE verifier, kept in the ephemeral
store (Redis where configured) for ``federation.flow_ttl_s``, bound to the IdP and to the
browser that started it (a random value whose hash is stored, the value itself going into a
cookie). ``finish`` takes the flow out of the store in one atomic step, so a callback URL works
once; it then redeems the code at the token endpoint, validates the ID token
(:mod:`obsigen.federation.oidc_idtoken`), reads userinfo when the IdP offers it (its ``sub`` must
be the ID token's), and returns what the IdP said about the user as a FederatedIdentity.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import httpx
from authlib.oauth2.rfc7636 import create_s256_code_challenge  # type: ignore[import-untyped]

from obsigen.config import FederationSettings
from obsigen.db.federation_models import IdentityProvider
from obsigen.ephemeral.interfaces import EphemeralStore
from obsigen.errors import InvalidInput
from obsigen.federation.idps import oidc_config
from obsigen.federation.oidc_config import OidcConfig
from obsigen.federation.oidc_errors import IdpUnreachable, OidcRefused
from obsigen.federation.oidc_http import new_client, request_json
from obsigen.federation.oidc_idtoken import IdTokenExpectations, verify_id_token
from obsigen.federation.oidc_metadata import MetadataCache, ProviderMetadata, SigningKey
from obsigen.federation.signin import FederatedIdentity
from obsigen.secretref import resolve_secret

FLOW_PREFIX = "oidc:flow:"
_STATE = re.compile(r"[A-Za-z0-9_-]{20,128}")
_RETURN_TO = re.compile(r"/(?![/\\])[\x21-\x7e]{0,500}")
MAX_GROUPS = 200


def safe_return_to(value: str | None) -> str | None:
    """A path on this server, or nothing: ``//evil.example`` and ``/\\evil`` are other hosts to a
    browser, and absolute URLs would make the sign-in an open redirect."""
    if value is None or value == "":
        return None
    if not _RETURN_TO.fullmatch(value):
        raise InvalidInput("return_to must be a path on this server (starting with one '/')")
    return value


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _text(value: object, limit: int) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


def _groups(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return ()
    groups = [g for g in value if isinstance(g, str) and 0 < len(g) <= 255]
    return tuple(dict.fromkeys(groups))[:MAX_GROUPS]


def idp_mfa(claims: Mapping[str, Any], config: OidcConfig) -> bool:
    """Whether the ID token's authentication context proves a second factor (RFC 8176 amr
    values or an acr the admin listed)."""
    amr = claims.get("amr")
    amr_values = {a for a in amr if isinstance(a, str)} if isinstance(amr, list) else set()
    if amr_values & set(config.mfa_amr_values):
        return True
    acr = claims.get("acr")
    return isinstance(acr, str) and acr in config.mfa_acr_values


def federated_identity(
    id_claims: Mapping[str, Any], userinfo: Mapping[str, Any], config: OidcConfig
) -> FederatedIdentity:
    # Userinfo may carry profile claims the ID token left out; the authentication context
    # (amr/acr) is taken from the signed ID token only.
    merged = {**id_claims, **userinfo}
    verified = merged.get("email_verified")
    return FederatedIdentity(
        subject=str(id_claims["sub"]),
        email=_text(merged.get(config.email_claim), 254),
        # Some IdPs send the string "true".
        email_verified=verified is True or verified == "true",
        display_name=_text(merged.get(config.name_claim), 200),
        groups=_groups(merged.get(config.groups_claim)),
        idp_mfa=idp_mfa(id_claims, config),
        protocol="oidc",
    )


@dataclass(frozen=True, slots=True)
class FlowStart:
    authorization_url: str
    # Goes into the browser's cookie; the store keeps only its hash.
    browser_binding: str


@dataclass(frozen=True, slots=True)
class FlowResult:
    identity: FederatedIdentity
    return_to: str | None


class OidcRelyingParty:
    """One per process: the metadata cache is shared; flows live in the ephemeral store."""

    def __init__(
        self,
        settings: FederationSettings,
        store: EphemeralStore,
        *,
        cache: MetadataCache | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.cache = cache or MetadataCache()
        self._transport = transport
        self._clock = clock

    def redirect_uri(self, idp_id: str) -> str:
        return f"{self.settings.public_url}/auth/oidc/{idp_id}/callback"

    def _client(self) -> httpx.AsyncClient:
        return new_client(self.settings.http_timeout_s, self._transport)

    async def begin(self, idp: IdentityProvider, return_to: str | None = None) -> FlowStart:
        config = oidc_config(idp)
        return_to = safe_return_to(return_to)
        async with self._client() as client:
            metadata = await self.cache.metadata(client, config.issuer)
        state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        verifier, binding = secrets.token_urlsafe(48), secrets.token_urlsafe(32)
        redirect_uri = self.redirect_uri(idp.id)
        record = {
            "idp": idp.id,
            "nonce": nonce,
            "verifier": verifier,
            "binding": _digest(binding),
            "return_to": return_to,
            "redirect_uri": redirect_uri,
        }
        await self.store.set(
            FLOW_PREFIX + state, json.dumps(record).encode(), self.settings.flow_ttl_s
        )
        query = urlencode(
            {
                "response_type": "code",
                "client_id": config.client_id,
                "redirect_uri": redirect_uri,
                "scope": " ".join(config.scopes),
                "state": state,
                "nonce": nonce,
                "code_challenge": str(create_s256_code_challenge(verifier)),
                "code_challenge_method": "S256",
            }
        )
        endpoint = metadata.authorization_endpoint
        return FlowStart(f"{endpoint}{'&' if '?' in endpoint else '?'}{query}", binding)

    async def _spend(self, state: object) -> dict[str, Any] | None:
        if not isinstance(state, str) or not _STATE.fullmatch(state):
            return None
        raw = await self.store.take(FLOW_PREFIX + state)
        return json.loads(raw) if raw is not None else None

    async def finish(
        self, idp: IdentityProvider, params: Mapping[str, str], browser_binding: str | None
    ) -> FlowResult:
        """Verifies the IdP's answer to a flow of ``idp``; OidcRefused on any failed check."""
        config = oidc_config(idp)
        record = await self._spend(params.get("state"))
        error = params.get("error")
        if error is not None:
            description = params.get("error_description", "")
            detail = " ".join(f"{error}: {description}".split())[:300]
            raise OidcRefused(f"the identity provider answered with an error: {detail}")
        if record is None:
            raise OidcRefused("unknown, expired or already used sign-in (state)")
        if record.get("idp") != idp.id:
            raise OidcRefused("this sign-in was started with another identity provider")
        if browser_binding is None or not hmac.compare_digest(
            _digest(browser_binding), str(record.get("binding"))
        ):
            raise OidcRefused("this sign-in was started in another browser")
        # RFC 9207: an IdP that names itself in the response must be the one we sent the user to.
        if "iss" in params and params["iss"] != config.issuer:
            raise OidcRefused("the authorization response comes from another issuer")
        code = params.get("code")
        if not code or len(code) > 2048:
            raise OidcRefused("the authorization response has no code")
        async with self._client() as client:
            metadata = await self.cache.metadata(client, config.issuer)
            tokens = await self._redeem(client, metadata, config, code, record)
            expect = IdTokenExpectations(
                issuer=config.issuer,
                client_id=config.client_id,
                nonce=str(record["nonce"]),
                clock_skew_s=self.settings.clock_skew_s,
            )

            async def key_for(kid: str | None, alg: str) -> SigningKey:
                return await self.cache.signing_key(client, metadata.jwks_uri, kid, alg)

            claims = await verify_id_token(tokens.get("id_token"), expect, key_for, self._clock())
            userinfo = await self._userinfo(client, metadata, tokens, claims)
        return FlowResult(federated_identity(claims, userinfo, config), record.get("return_to"))

    async def _redeem(
        self,
        client: httpx.AsyncClient,
        metadata: ProviderMetadata,
        config: OidcConfig,
        code: str,
        record: Mapping[str, Any],
    ) -> dict[str, Any]:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": str(record["redirect_uri"]),
            "code_verifier": str(record["verifier"]),
        }
        auth: tuple[str, str] | None = None
        try:
            # A secret manager may block: keep it off the event loop.
            secret = await asyncio.to_thread(resolve_secret, config.client_secret)
        except Exception:  # noqa: BLE001 - any failure means the same: no usable secret
            raise IdpUnreachable(
                "the client secret of this identity provider is unavailable"
            ) from None
        if secret:
            # RFC 6749 §2.3.1: both parts are form-urlencoded before Basic encoding.
            auth = (quote(config.client_id, safe=""), quote(secret, safe=""))
        else:
            form["client_id"] = config.client_id
        status, tokens = await request_json(
            client,
            "POST",
            metadata.token_endpoint,
            what="token endpoint",
            accept_error_json=True,
            data=form,
            auth=auth,
            headers={"Accept": "application/json"},
        )
        if status != 200:
            error = " ".join(str(tokens.get("error", f"HTTP {status}")).split())[:100]
            raise OidcRefused(f"the token endpoint refused the code: {error}")
        token_type = tokens.get("token_type")
        if "access_token" in tokens and str(token_type).lower() != "bearer":
            raise OidcRefused("the token endpoint returned a token type other than Bearer")
        return tokens

    async def _userinfo(
        self,
        client: httpx.AsyncClient,
        metadata: ProviderMetadata,
        tokens: Mapping[str, Any],
        claims: Mapping[str, Any],
    ) -> dict[str, Any]:
        access_token = tokens.get("access_token")
        if metadata.userinfo_endpoint is None or not isinstance(access_token, str):
            return {}
        _, userinfo = await request_json(
            client,
            "GET",
            metadata.userinfo_endpoint,
            what="userinfo",
            headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
        )
        # OpenID Connect Core §5.3.2: otherwise the answer may be about someone else.
        if userinfo.get("sub") != claims["sub"]:
            raise OidcRefused("userinfo describes another subject than the ID token")
        return userinfo
