"""Session access tokens: short-lived JWTs (RFC 9068 ``at+jwt``) signed by our key provider.

A token says who (``sub``, ``tid``), which session (``sid``), how the user signed in (``amr``,
``acr``, ``auth_time``) and until when (``exp``, never beyond the session's end ``sx``). It is
verified locally (``KeyRing``); whether the session is still alive is the session layer's
question, asked on every request. The order of the checks is in docs/tokens.md.

Every refusal raises ``InvalidToken`` with one generic text: a caller probing tokens learns
nothing about which check failed. The reason goes to the debug log.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from obsigen.errors import Unauthenticated
from obsigen.keys.errors import KeyStateError
from obsigen.tokens.jws import (
    MAX_TOKEN_CHARS,
    MalformedToken,
    b64url_encode,
    parse_compact,
    parse_json_object,
    signing_input,
)
from obsigen.tokens.keyring import KeyRing

log = logging.getLogger(__name__)

# RFC 8176 amr values that prove a second factor.
MFA_METHODS = frozenset({"otp", "hwk", "swk", "mfa"})
ACR_MFA = "urn:obsigen:acr:mfa"
ACR_PWD = "urn:obsigen:acr:pwd"  # noqa: S105 - an acr URN, not a password
TOKEN_TYPE = "at+jwt"  # noqa: S105 - the RFC 9068 typ, not a secret
INVALID_TOKEN_DETAIL = "invalid or expired access token"  # noqa: S105 - a message
MAX_CLOCK_SKEW_S = 120

_JTI_RE = re.compile(r"[A-Za-z0-9_-]{16,64}")
_AMR_RE = re.compile(r"[a-z0-9_-]{1,32}")
_MAX_ID_CHARS = 256
_MAX_AMR = 8


class InvalidToken(Unauthenticated):
    """Any access token we do not accept. The detail never says why."""

    type_slug = "invalid-token"

    def __init__(self) -> None:
        super().__init__(INVALID_TOKEN_DETAIL)


@dataclass(frozen=True, slots=True)
class AccessClaims:
    subject: str  # sub: user id
    tenant_id: str  # tid
    session_id: str  # sid
    token_id: str  # jti (random, 128 bits)
    issued_at: int  # iat, epoch seconds
    not_before: int  # nbf
    expires_at: int  # exp
    auth_time: int  # auth_time
    session_expires_at: int  # sx: absolute end of the session (exp never goes beyond it)
    amr: tuple[str, ...]
    acr: str

    @property
    def mfa(self) -> bool:
        return not MFA_METHODS.isdisjoint(self.amr)


def _acr_for(amr: Sequence[str]) -> str:
    return ACR_MFA if not MFA_METHODS.isdisjoint(amr) else ACR_PWD


class _Refused(Exception):
    """A claim check failed; carries the reason for the debug log."""


def _str_claim(claims: dict[str, Any], name: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not value or len(value) > _MAX_ID_CHARS:
        raise _Refused(f"claim {name} missing or not a short string")
    return value


def _int_claim(claims: dict[str, Any], name: str) -> int:
    value = claims.get(name)
    # bool is an int in Python; a JSON true is not a time.
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**40:
        raise _Refused(f"claim {name} missing or not an epoch second")
    return value


def _amr_claim(claims: dict[str, Any]) -> tuple[str, ...]:
    value = claims.get("amr")
    if (
        not isinstance(value, list)
        or not value
        or len(value) > _MAX_AMR
        or not all(isinstance(m, str) and _AMR_RE.fullmatch(m) for m in value)
    ):
        raise _Refused("claim amr missing or malformed")
    return tuple(value)


class TokenService:
    def __init__(
        self,
        keyring: KeyRing,
        *,
        issuer: str,
        audience: str,
        access_ttl_s: int,
        clock_skew_s: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not issuer or not audience:
            raise ValueError("issuer and audience must not be empty")
        if access_ttl_s <= 0:
            raise ValueError("access_ttl_s must be positive")
        if not 0 <= clock_skew_s <= MAX_CLOCK_SKEW_S:
            # A large skew would let an expired (perhaps stolen) token live on.
            raise ValueError(f"clock_skew_s must be between 0 and {MAX_CLOCK_SKEW_S}")
        self._keyring = keyring
        self._issuer = issuer
        self._audience = audience
        self._ttl_s = access_ttl_s
        self._skew_s = clock_skew_s
        self._clock = clock

    @property
    def keyring(self) -> KeyRing:
        return self._keyring

    @property
    def issuer(self) -> str:
        return self._issuer

    @property
    def audience(self) -> str:
        return self._audience

    # --- issuing --------------------------------------------------------------------------------

    async def issue(
        self,
        *,
        subject: str,
        tenant_id: str,
        session_id: str,
        amr: Sequence[str],
        auth_time: int,
        session_expires_at: int,
    ) -> tuple[str, AccessClaims]:
        now = int(self._clock())
        if session_expires_at <= now:
            raise Unauthenticated("the session has ended: sign in again")
        for name, value in (
            ("subject", subject),
            ("tenant_id", tenant_id),
            ("session_id", session_id),
        ):
            if not isinstance(value, str) or not value or len(value) > _MAX_ID_CHARS:
                raise ValueError(f"{name} must be a non-empty string of at most {_MAX_ID_CHARS}")
        if isinstance(amr, str):
            raise TypeError("amr is a sequence of method names, not one string")
        methods = tuple(dict.fromkeys(amr))  # order kept, duplicates dropped
        if not methods or len(methods) > _MAX_AMR or not all(_AMR_RE.fullmatch(m) for m in methods):
            raise ValueError("amr must name 1 to 8 RFC 8176 methods")
        claims = AccessClaims(
            subject=subject,
            tenant_id=tenant_id,
            session_id=session_id,
            token_id=b64url_encode(secrets.token_bytes(16)),
            issued_at=now,
            not_before=now,
            expires_at=min(now + self._ttl_s, session_expires_at),
            auth_time=int(auth_time),
            session_expires_at=int(session_expires_at),
            amr=methods,
            acr=_acr_for(methods),
        )
        payload = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": claims.subject,
            "tid": claims.tenant_id,
            "sid": claims.session_id,
            "jti": claims.token_id,
            "iat": claims.issued_at,
            "nbf": claims.not_before,
            "exp": claims.expires_at,
            "auth_time": claims.auth_time,
            "sx": claims.session_expires_at,
            "amr": list(claims.amr),
            "acr": claims.acr,
        }
        token = await self._sign(payload)
        if len(token) > MAX_TOKEN_CHARS:
            # Never hand out a token that verify() would refuse.
            raise ValueError("access token would exceed the maximum token size")
        return token, claims

    async def _sign(self, payload: dict[str, Any]) -> str:
        for attempt in range(2):
            key = await self._keyring.ensure_signing_key()
            header = {"alg": key.alg, "typ": TOKEN_TYPE, "kid": key.kid}
            message = signing_input(header, payload)
            try:
                _, _, signature = await self._keyring.sign(message, kid=key.kid)
            except KeyStateError:
                # Rotated by another process since our key list was read: read it again.
                if attempt:
                    raise
                await self._keyring.refresh()
                continue
            return f"{message.decode('ascii')}.{b64url_encode(signature)}"
        raise AssertionError("unreachable")

    # --- verifying ------------------------------------------------------------------------------

    async def verify(self, token: str) -> AccessClaims:
        try:
            return await self._verify(token)
        except (MalformedToken, _Refused) as exc:
            log.debug("access token refused: %s", exc)
            raise InvalidToken() from None

    async def _verify(self, token: str) -> AccessClaims:
        parsed = parse_compact(token, expected_typ=TOKEN_TYPE)
        verifier = await self._keyring.verifier(parsed.kid)
        if verifier is None:
            raise _Refused("kid is not one of our usable keys")
        if verifier.alg != parsed.alg:
            raise _Refused("header alg differs from the key's alg")
        if not verifier.verify(parsed.signing_input, parsed.signature):
            raise _Refused("bad signature")
        claims = parse_json_object(parsed.payload)
        return self._check_claims(claims)

    def _check_claims(self, claims: dict[str, Any]) -> AccessClaims:
        if claims.get("iss") != self._issuer:
            raise _Refused("wrong or missing iss")
        aud = claims.get("aud")
        # RFC 7519 allows a list; we issue a string and take a list only of strings.
        if not (
            aud == self._audience
            or (
                isinstance(aud, list)
                and self._audience in aud
                and all(isinstance(a, str) for a in aud)
            )
        ):
            raise _Refused("wrong or missing aud")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not _JTI_RE.fullmatch(jti):
            raise _Refused("jti missing or malformed")
        iat, nbf, exp = (_int_claim(claims, name) for name in ("iat", "nbf", "exp"))
        auth_time, sx = _int_claim(claims, "auth_time"), _int_claim(claims, "sx")
        now = self._clock()
        skew = self._skew_s
        if now >= exp + skew:
            raise _Refused("expired")
        if iat > now + skew:
            raise _Refused("issued in the future")
        if nbf > now + skew:
            raise _Refused("not yet valid")
        if not iat <= nbf < exp or exp - iat > self._ttl_s:
            raise _Refused("lifetime longer than access_ttl_s or inconsistent")
        if exp > sx or auth_time > iat + skew:
            raise _Refused("exp beyond the session end or auth_time after iat")
        amr = _amr_claim(claims)
        acr = claims.get("acr")
        if acr != _acr_for(amr):
            raise _Refused("acr does not match amr")
        return AccessClaims(
            subject=_str_claim(claims, "sub"),
            tenant_id=_str_claim(claims, "tid"),
            session_id=_str_claim(claims, "sid"),
            token_id=jti,
            issued_at=iat,
            not_before=nbf,
            expires_at=exp,
            auth_time=auth_time,
            session_expires_at=sx,
            amr=amr,
            acr=acr,
        )
