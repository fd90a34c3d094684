"""SAML 2.0 sign-in for one IdP: start (AuthnRequest over HTTP-Redirect) and finish (Response
over HTTP-POST) and turn a verified assertion into a :class:`FederatedIdentity`.

The order on the way back matters: hardened parse and shape checks first (nothing reaches
pysaml2 that could expand entities or hide a second assertion), then pysaml2's signature and
decryption, then the same shape checks on what it verified, our own checks of every condition
on the exact signed element, the signer pins, and last the one-time spends (request id,
assertion id) so that a forged response cannot burn a legitimate user's pending request.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from obsigen.config import FederationSettings
from obsigen.db.federation_models import IdentityProvider
from obsigen.ephemeral.interfaces import EphemeralStore
from obsigen.federation.idps import saml_config
from obsigen.federation.saml_assertion import (
    NAMEID_EMAIL,
    NAMEID_TRANSIENT,
    AssertionFacts,
    Expectations,
    check_response,
    read_assertion,
)
from obsigen.federation.saml_config import SamlConfig
from obsigen.federation.saml_sp import (
    SpEndpoints,
    authn_request,
    sp_endpoints,
    sp_metadata,
    verify_response,
)
from obsigen.federation.saml_xml import (
    ENCRYPTED_ASSERTION,
    SIGNATURE,
    SamlRefused,
    check_response_shape,
    covered_assertion,
    decode_post_binding,
    parse_strict,
    sha256_hex,
    signature_certificates,
)
from obsigen.federation.signin import FederatedIdentity

__all__ = ["SamlRefused", "SamlSignIn", "SamlSp", "safe_relay_state"]

_MAX_RELAY_STATE = 512


def _request_key(idp_id: str, request_id: str) -> str:
    return f"saml:request:{idp_id}:{request_id}"


def _assertion_key(idp_id: str, assertion_id: str) -> str:
    return f"saml:assertion:{idp_id}:{assertion_id}"


def safe_relay_state(value: str | None) -> str | None:
    """A RelayState we may send the browser to after sign-in: a path on this server only."""
    if not value:
        return None
    if (
        len(value) > _MAX_RELAY_STATE
        or not value.startswith("/")
        or value.startswith("//")
        or "\\" in value
        or any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in value)
    ):
        raise SamlRefused("RelayState must be a path on this server")
    return value


@dataclass(frozen=True, slots=True)
class SamlSignIn:
    identity: FederatedIdentity
    relay_state: str | None


class SamlSp:
    """The SP side of one IdP row."""

    def __init__(
        self, idp: IdentityProvider, federation: FederationSettings, store: EphemeralStore
    ) -> None:
        self.idp = idp
        self.config: SamlConfig = saml_config(idp)
        self.endpoints: SpEndpoints = sp_endpoints(federation.public_url, idp.id)
        self.federation = federation
        self.store = store

    async def metadata(self) -> str:
        return await asyncio.to_thread(
            sp_metadata, self.config, self.endpoints, self.federation.clock_skew_s
        )

    async def login(self, relay_state: str | None) -> str:
        """The IdP URL to redirect the browser to; the request id is remembered, once."""
        relay = safe_relay_state(relay_state)
        # The RelayState sent to the IdP is opaque; the real one stays with us.
        request = await asyncio.to_thread(
            authn_request,
            self.config,
            self.endpoints,
            self.federation.clock_skew_s,
            secrets.token_urlsafe(16),
        )
        flow = json.dumps({"relay_state": relay}).encode()
        await self.store.set(
            _request_key(self.idp.id, request.request_id), flow, self.federation.flow_ttl_s
        )
        return request.location

    async def consume(self, encoded_response: str, now: datetime | None = None) -> SamlSignIn:
        raw = decode_post_binding(encoded_response)
        root = parse_strict(raw)
        envelope = check_response_shape(root)
        if self.config.want_encrypted_assertions and envelope.tag != ENCRYPTED_ASSERTION:
            raise SamlRefused("this identity provider must encrypt its assertions")
        if envelope.tag != ENCRYPTED_ASSERTION and not (
            envelope.find(SIGNATURE) is not None or root.find(SIGNATURE) is not None
        ):
            # An encrypted assertion's own signature is only visible after decryption.
            raise SamlRefused("neither the assertion nor the response is signed")
        self._check_pins(signature_certificates(root))
        in_response_to = root.get("InResponseTo")
        if in_response_to is not None:
            # Looked at now, spent only once everything else has passed (see the docstring).
            if await self.store.get(_request_key(self.idp.id, in_response_to)) is None:
                raise SamlRefused("InResponseTo names no pending request of ours")
        elif not self.config.allow_idp_initiated:
            raise SamlRefused("unsolicited (IdP-initiated) responses are not accepted")
        outstanding = {in_response_to: "-"} if in_response_to else {}
        verified = await asyncio.to_thread(
            verify_response,
            self.config,
            self.endpoints,
            self.federation.clock_skew_s,
            # Re-encoded from the bytes checked above, so pysaml2's lenient decoder cannot
            # read a different document.
            base64.b64encode(raw).decode("ascii"),
            outstanding,
        )
        checked = parse_strict(verified.xml)
        signed = covered_assertion(checked)
        self._check_pins(signature_certificates(checked))
        expect = Expectations(
            idp_entity_id=verified.idp_entity_id,
            sp_entity_id=self.endpoints.entity_id,
            acs_url=self.endpoints.acs_url,
            in_response_to=in_response_to,
            now=now or datetime.now(UTC),
            clock_skew=timedelta(seconds=self.federation.clock_skew_s),
        )
        check_response(checked, expect)
        facts = read_assertion(signed.element, expect)
        relay = await self._spend(in_response_to, facts, expect)
        return SamlSignIn(identity=self._identity(facts), relay_state=relay)

    def _check_pins(self, certificates: list[bytes]) -> None:
        pins = set(self.config.pinned_certificates_sha256)
        for der in certificates:
            if sha256_hex(der) not in pins:
                raise SamlRefused("the signing certificate is not pinned for this IdP")

    async def _spend(
        self, in_response_to: str | None, facts: AssertionFacts, expect: Expectations
    ) -> str | None:
        relay: str | None = None
        if in_response_to is not None:
            flow = await self.store.take(_request_key(self.idp.id, in_response_to))
            if flow is None:
                raise SamlRefused("this request was already answered")
            relay = json.loads(flow).get("relay_state")
        lifetime = (facts.valid_until - expect.now + expect.clock_skew).total_seconds()
        first = await self.store.claim(
            _assertion_key(self.idp.id, facts.assertion_id), max(lifetime, 1.0)
        )
        if not first:
            raise SamlRefused("this assertion was already used")
        return relay

    def _identity(self, facts: AssertionFacts) -> FederatedIdentity:
        config = self.config
        if facts.name_id_format == NAMEID_TRANSIENT:
            raise SamlRefused("a transient NameID cannot identify an account")
        subject = facts.name_id
        if facts.name_id_format == NAMEID_EMAIL:
            subject = subject.lower()
        emails = facts.attributes.get(config.email_attribute, ())
        email = emails[0] if emails else None
        if email is None and facts.name_id_format == NAMEID_EMAIL:
            email = subject
        names = facts.attributes.get(config.name_attribute, ())
        groups = tuple(dict.fromkeys(g for g in facts.attributes.get(config.groups_attribute, ())))
        mfa = bool(set(config.mfa_authn_contexts).intersection(facts.authn_contexts))
        return FederatedIdentity(
            subject=subject,
            email=email,
            # The IdP is authoritative for the addresses it asserts; signin.py still requires
            # the address's domain to be declared for this IdP before linking an account.
            email_verified=email is not None,
            display_name=names[0] if names else None,
            groups=groups[:200],
            idp_mfa=mfa,
            protocol="saml",
        )
