"""Public JWKs: their RFC 7638 thumbprints, and checking a signature with one.

Checkpoints are signed by the software Ed25519 key or, through the keys issue's providers, by
ES256 or RS256 keys in an HSM or KMS; an auditor checks any of them offline with the public
JWK alone. Only the EC and RSA checks need ``cryptography``, so it is imported there.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping

from obsigen.audit import ed25519
from obsigen.audit.canonical import canonical_bytes

# RFC 7638 section 3.2: the members a thumbprint covers, per key type.
_THUMBPRINT_MEMBERS = {
    "OKP": ("crv", "kty", "x"),
    "EC": ("crv", "kty", "x", "y"),
    "RSA": ("e", "kty", "n"),
}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not base64url") from exc


def jwk_thumbprint(jwk: Mapping[str, str]) -> str:
    """RFC 7638 thumbprint: what an auditor compares with the key id the operator published."""
    members = _THUMBPRINT_MEMBERS.get(str(jwk.get("kty")))
    if members is None:
        raise ValueError(f"unsupported key type {jwk.get('kty')!r}")
    try:
        required = {name: str(jwk[name]) for name in members}
    except KeyError as exc:
        raise ValueError(f"the JWK lacks {exc}") from exc
    return b64url(hashlib.sha256(canonical_bytes(required)).digest())


def verify_with_jwk(jwk: Mapping[str, str], data: bytes, signature: bytes) -> bool:
    """True only for a valid signature by this public key; never raises on bad input."""
    if "d" in jwk:
        return False  # a private key has no business here
    try:
        kty, crv = jwk.get("kty"), jwk.get("crv")
        if kty == "OKP" and crv == "Ed25519":
            return ed25519.verify(b64url_decode(jwk["x"]), data, signature)
        if kty == "EC" and crv == "P-256":
            return _verify_es256(jwk, data, signature)
        if kty == "RSA":
            return _verify_rs256(jwk, data, signature)
    except (KeyError, ValueError, TypeError):
        return False
    return False


def _verify_es256(jwk: Mapping[str, str], data: bytes, signature: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    if len(signature) != 64:  # JOSE: r || s, 32 bytes each
        return False
    numbers = ec.EllipticCurvePublicNumbers(
        int.from_bytes(b64url_decode(jwk["x"]), "big"),
        int.from_bytes(b64url_decode(jwk["y"]), "big"),
        ec.SECP256R1(),
    )
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    try:
        numbers.public_key().verify(der, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def _verify_rs256(jwk: Mapping[str, str], data: bytes, signature: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    numbers = rsa.RSAPublicNumbers(
        int.from_bytes(b64url_decode(jwk["e"]), "big"),
        int.from_bytes(b64url_decode(jwk["n"]), "big"),
    )
    try:
        numbers.public_key().verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True
