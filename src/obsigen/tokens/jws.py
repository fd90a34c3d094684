"""Strict compact JWS (RFC 7515) for our own tokens: parsing, encoding, local verification.

Only what our tokens use is accepted, and everything is refused that verifiers have been
tricked with: ``alg`` is checked against the allow-list before any other header field is
looked at; key-carrying or key-locating headers (``jwk``, ``jku``, ``x5u``, ``x5c``) and
``crit`` are refused, and so is any header field we do not issue; base64url must be unpadded
and canonical; JSON must be objects without duplicate names. A token is a few hundred bytes,
so anything above ``MAX_TOKEN_CHARS`` is refused before it is decoded.

ECDSA signatures are checked for 0 < r, s < n before they reach the library (the "psychic
signature" class, CVE-2022-21449): the check holds whatever sits below.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from obsigen.keys.interfaces import SigningAlg

MAX_TOKEN_CHARS = 8192
ALLOWED_ALGS: frozenset[str] = frozenset({"ES256", "RS256"})
# Headers that name or carry a key: honouring any of them lets the token pick its own key.
FORBIDDEN_HEADERS: frozenset[str] = frozenset({"jwk", "jku", "x5u", "x5c", "crit"})
# Everything our issuer writes; anything else means the token is not one of ours.
ALLOWED_HEADERS: frozenset[str] = frozenset({"alg", "typ", "kid"})
# The kid alphabet of every key provider (keys.common): refusing other shapes before any
# lookup keeps path traversal and injection strings away from files, HSM labels and KMS.
KID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
_B64URL_RE = re.compile(r"[A-Za-z0-9_-]*")
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_P256_BYTES = 32
MIN_RSA_BITS = 2048
PUBLIC_JWK_FIELDS: frozenset[str] = frozenset(
    {"kty", "crv", "x", "y", "n", "e", "kid", "alg", "use"}
)

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey


class MalformedToken(ValueError):
    """Why a token was refused. For logs only: callers answer with one generic message."""


# --- encodings ---------------------------------------------------------------------------------


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Unpadded base64url, canonical only: one token has exactly one spelling."""
    if not _B64URL_RE.fullmatch(text) or len(text) % 4 == 1:
        raise MalformedToken("not unpadded base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise MalformedToken("not base64url") from None
    # Non-zero unused bits in the last character decode to the same bytes; refusing them
    # keeps a signed token from having several accepted spellings.
    if b64url_encode(data) != text:
        raise MalformedToken("non-canonical base64url")
    return data


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, value in pairs:
        if name in result:
            raise MalformedToken(f"duplicate JSON member {name[:40]!r}")
        result[name] = value
    return result


def _refuse_constant(name: str) -> Any:
    raise MalformedToken(f"JSON constant {name} is not allowed")


def parse_json_object(data: bytes) -> dict[str, Any]:
    try:
        text = data.decode("utf-8")
        value = json.loads(
            text, object_pairs_hook=_refuse_duplicates, parse_constant=_refuse_constant
        )
    except MalformedToken:
        raise
    except (ValueError, RecursionError):
        raise MalformedToken("not JSON") from None
    if not isinstance(value, dict):
        raise MalformedToken("JSON is not an object")
    return value


def encode_json(value: Mapping[str, Any]) -> str:
    raw = json.dumps(value, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return b64url_encode(raw.encode("ascii"))


def signing_input(header: Mapping[str, Any], claims: Mapping[str, Any]) -> bytes:
    return f"{encode_json(header)}.{encode_json(claims)}".encode("ascii")


# --- parsing -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ParsedJws:
    alg: SigningAlg
    kid: str
    header: dict[str, Any]
    payload: bytes
    signing_input: bytes
    signature: bytes


def _typ_matches(typ: object, expected: str) -> bool:
    # RFC 7515 4.1.9: media types compare case-insensitively, "application/" may be left out.
    if not isinstance(typ, str):
        return False
    typ = typ.lower()
    expected = expected.lower()
    return typ in (expected, "application/" + expected)


def parse_compact(token: str, *, expected_typ: str | None = None) -> ParsedJws:
    """Split and check a compact JWS; the signature is not verified here."""
    if not isinstance(token, str):
        raise MalformedToken("not a string")
    if len(token) > MAX_TOKEN_CHARS:
        raise MalformedToken("too long")
    if not token.isascii():
        raise MalformedToken("not ASCII")
    parts = token.split(".")
    if len(parts) != 3:
        raise MalformedToken("not three parts")
    header_b64, payload_b64, signature_b64 = parts
    header = parse_json_object(b64url_decode(header_b64))
    # The allow-list comes first: nothing else in a header is trusted while alg could still
    # be "none", an HMAC or anything else that is not one of ours.
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in ALLOWED_ALGS:
        raise MalformedToken("alg not allowed")
    forbidden = FORBIDDEN_HEADERS & header.keys()
    if forbidden:
        raise MalformedToken(f"header {sorted(forbidden)[0]} is refused")
    if not header.keys() <= ALLOWED_HEADERS:
        raise MalformedToken("unknown header field")
    if expected_typ is not None and not _typ_matches(header.get("typ"), expected_typ):
        raise MalformedToken("wrong typ")
    kid = header.get("kid")
    if not isinstance(kid, str) or not KID_RE.fullmatch(kid):
        raise MalformedToken("kid missing or malformed")
    payload = b64url_decode(payload_b64)
    signature = b64url_decode(signature_b64)
    if not signature:
        raise MalformedToken("no signature")
    return ParsedJws(
        alg="ES256" if alg == "ES256" else "RS256",
        kid=kid,
        header=header,
        payload=payload,
        signing_input=f"{header_b64}.{payload_b64}".encode("ascii"),
        signature=signature,
    )


# --- verification ------------------------------------------------------------------------------


def ecdsa_raw_to_der(raw: bytes) -> bytes | None:
    """JWS ES256 r||s to DER, or None when r or s is outside [1, n-1]."""
    if len(raw) != 2 * _P256_BYTES:
        return None
    r = int.from_bytes(raw[:_P256_BYTES], "big")
    s = int.from_bytes(raw[_P256_BYTES:], "big")
    if not (0 < r < P256_ORDER and 0 < s < P256_ORDER):
        return None
    return encode_dss_signature(r, s)


def _jwk_int(jwk: Mapping[str, Any], name: str) -> bytes:
    value = jwk.get(name)
    if not isinstance(value, str):
        raise MalformedToken(f"JWK without {name}")
    return b64url_decode(value)


def _public_key_from_jwk(jwk: Mapping[str, Any], alg: SigningAlg) -> PublicKey:
    if alg == "ES256":
        if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
            raise MalformedToken("ES256 JWK is not an EC P-256 key")
        x, y = _jwk_int(jwk, "x"), _jwk_int(jwk, "y")
        if len(x) != _P256_BYTES or len(y) != _P256_BYTES:
            raise MalformedToken("EC JWK coordinates have the wrong length")
        numbers = ec.EllipticCurvePublicNumbers(
            int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1()
        )
        try:
            return numbers.public_key()  # refuses a point that is not on the curve
        except ValueError:
            raise MalformedToken("EC JWK point is not on P-256") from None
    if jwk.get("kty") != "RSA":
        raise MalformedToken("RS256 JWK is not an RSA key")
    n = int.from_bytes(_jwk_int(jwk, "n"), "big")
    e = int.from_bytes(_jwk_int(jwk, "e"), "big")
    if n.bit_length() < MIN_RSA_BITS:
        raise MalformedToken("RSA JWK modulus too short")
    try:
        return rsa.RSAPublicNumbers(e, n).public_key()
    except ValueError:
        raise MalformedToken("RSA JWK is not a valid public key") from None


class Verifier:
    """One of our public keys, ready to check signatures on the host."""

    __slots__ = ("_jwk", "_key", "alg", "kid")

    def __init__(self, kid: str, alg: SigningAlg, key: PublicKey, jwk: Mapping[str, str]) -> None:
        self.kid = kid
        self.alg: SigningAlg = alg
        self._key = key
        self._jwk = {name: str(jwk[name]) for name in sorted(PUBLIC_JWK_FIELDS & jwk.keys())}

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any], *, kid: str, alg: SigningAlg) -> Verifier:
        """``kid`` and ``alg`` come from our key list; the JWK must agree with both."""
        if jwk.get("kid", kid) != kid or jwk.get("alg", alg) != alg:
            raise MalformedToken("JWK kid or alg differs from the key list")
        if jwk.get("use", "sig") != "sig":
            raise MalformedToken("JWK is not a signing key")
        key = _public_key_from_jwk(jwk, alg)
        published = {**{k: v for k, v in jwk.items() if isinstance(v, str)}, "kid": kid}
        published.update(alg=alg, use="sig")
        return cls(kid, alg, key, published)

    @property
    def public_jwk(self) -> dict[str, str]:
        """The public parts only, whatever else the provider's JWK held."""
        return dict(self._jwk)

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            if self.alg == "ES256":
                der = ecdsa_raw_to_der(signature)
                if der is None or not isinstance(self._key, ec.EllipticCurvePublicKey):
                    return False
                self._key.verify(der, message, ec.ECDSA(hashes.SHA256()))
                return True
            if not isinstance(self._key, rsa.RSAPublicKey):
                return False
            if len(signature) != (self._key.key_size + 7) // 8:
                return False
            self._key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return False
        return True
