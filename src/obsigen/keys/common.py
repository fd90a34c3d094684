"""What every backend shares: kid checks, state rules, JWK and JWS encodings, host verification.

Verification uses only the public key, so providers whose private keys sit in an HSM or KMS
verify on the host from a cached public key: no lock on the token, no KMS round trip per token.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from obsigen.keys.errors import (
    KeyConfigError,
    KeyNotFound,
    KeyStateError,
    UnsupportedAlgorithm,
    UnwrapFailed,
)
from obsigen.keys.interfaces import SIGNING_ALGS, KeyAlg, KeyInfo, KeyState, SigningAlg

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey
Clock = Callable[[], datetime]

# Kids become file names and token labels: a strict alphabet rules out path traversal and
# label injection before anything is looked up.
_KID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
_P256_BYTES = 32
RSA_BITS = 2048


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_kid(use: str) -> str:
    return f"{use}-{secrets.token_hex(8)}"


def check_kid(kid: str) -> str:
    if not isinstance(kid, str) or not _KID_RE.fullmatch(kid):
        raise KeyNotFound("no such key")
    return kid


def check_signing_alg(alg: str) -> SigningAlg:
    if alg not in SIGNING_ALGS:
        raise UnsupportedAlgorithm(f"signing algorithm {alg!r} is not allowed (ES256, RS256)")
    return "ES256" if alg == "ES256" else "RS256"


# --- states -------------------------------------------------------------------------------------


def effective_state(state: KeyState, retire_after: datetime | None, now: datetime) -> KeyState:
    if retire_after is not None and now >= retire_after:
        return KeyState.RETIRED
    return state


def check_transition(current: KeyState, new: KeyState) -> None:
    if current is KeyState.RETIRED and new is not KeyState.RETIRED:
        raise KeyStateError("a retired key stays retired")


def require_signing(info: KeyInfo) -> None:
    if info.use != "sig":
        raise KeyNotFound(f"no signing key {info.kid}")
    if info.state is not KeyState.ACTIVE:
        raise KeyStateError(f"key {info.kid} is {info.state}: it does not sign")


def require_verifying(info: KeyInfo) -> None:
    if info.use != "sig":
        raise KeyNotFound(f"no signing key {info.kid}")
    if info.state is KeyState.RETIRED:
        raise KeyStateError(f"key {info.kid} is retired: it does not verify")


def require_wrapping(info: KeyInfo) -> None:
    if info.use != "enc":
        raise KeyNotFound(f"no key-encryption key {info.kid}")
    if info.state is not KeyState.ACTIVE:
        raise KeyStateError(f"key {info.kid} is {info.state}: it does not wrap")


def require_unwrapping(info: KeyInfo) -> None:
    if info.use != "enc":
        raise KeyNotFound(f"no key-encryption key {info.kid}")
    if info.state is KeyState.RETIRED:
        raise KeyStateError(f"key {info.kid} is retired: it does not unwrap")


def info_to_json(info: KeyInfo) -> dict[str, Any]:
    return {
        "kid": info.kid,
        "alg": info.alg,
        "use": info.use,
        "created_at": info.created_at.isoformat(),
        "state": str(info.state),
        "retire_after": info.retire_after.isoformat() if info.retire_after else None,
    }


def info_from_json(raw: dict[str, Any], now: datetime) -> KeyInfo:
    """Rebuild a KeyInfo from stored metadata, with the state as it stands at ``now``."""
    alg = _key_alg(str(raw["alg"]))
    retire_after = datetime.fromisoformat(raw["retire_after"]) if raw.get("retire_after") else None
    return KeyInfo(
        kid=str(raw["kid"]),
        alg=alg,
        use="enc" if alg == "A256GCM" else "sig",
        created_at=datetime.fromisoformat(str(raw["created_at"])),
        state=effective_state(KeyState(raw["state"]), retire_after, now),
        retire_after=retire_after,
    )


def _key_alg(alg: str) -> KeyAlg:
    if alg == "ES256":
        return "ES256"
    if alg == "RS256":
        return "RS256"
    if alg == "A256GCM":
        return "A256GCM"
    raise UnsupportedAlgorithm(f"stored key has unknown algorithm {alg!r}")


# --- encodings ----------------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def public_jwk(key: PublicKey, kid: str, alg: SigningAlg) -> dict[str, str]:
    if alg == "ES256":
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
            raise UnsupportedAlgorithm(f"key {kid} is not a P-256 key")
        numbers = key.public_numbers()
        return {
            "kty": "EC",
            "crv": "P-256",
            "x": b64url(numbers.x.to_bytes(_P256_BYTES, "big")),
            "y": b64url(numbers.y.to_bytes(_P256_BYTES, "big")),
            "kid": kid,
            "alg": alg,
            "use": "sig",
        }
    if not isinstance(key, rsa.RSAPublicKey):
        raise UnsupportedAlgorithm(f"key {kid} is not an RSA key")
    rsa_numbers = key.public_numbers()
    return {
        "kty": "RSA",
        "n": b64url(rsa_numbers.n.to_bytes((rsa_numbers.n.bit_length() + 7) // 8, "big")),
        "e": b64url(rsa_numbers.e.to_bytes((rsa_numbers.e.bit_length() + 7) // 8, "big")),
        "kid": kid,
        "alg": alg,
        "use": "sig",
    }


def der_to_raw_ecdsa(der: bytes) -> bytes:
    """DER ECDSA-Sig-Value (KMS, OpenSSL) to the fixed 64-byte r||s that JWS ES256 wants."""
    r, s = decode_dss_signature(der)
    return r.to_bytes(_P256_BYTES, "big") + s.to_bytes(_P256_BYTES, "big")


def raw_to_der_ecdsa(raw: bytes) -> bytes | None:
    if len(raw) != 2 * _P256_BYTES:
        return None
    r = int.from_bytes(raw[:_P256_BYTES], "big")
    s = int.from_bytes(raw[_P256_BYTES:], "big")
    # r or s of zero is never valid; refusing here makes the "psychic signature" class of bug
    # (CVE-2022-21449) impossible whatever library sits below.
    if r == 0 or s == 0:
        return None
    return encode_dss_signature(r, s)


def verify_with_public_key(
    key: PublicKey, alg: SigningAlg, message: bytes, signature: bytes
) -> bool:
    try:
        if alg == "ES256":
            der = raw_to_der_ecdsa(signature)
            if der is None or not isinstance(key, ec.EllipticCurvePublicKey):
                return False
            key.verify(der, message, ec.ECDSA(hashes.SHA256()))
        else:
            if not isinstance(key, rsa.RSAPublicKey):
                return False
            key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def wrap_aad(kek_id: str, context: dict[str, str]) -> bytes:
    """Associated data binding a wrapped key to its KEK and context, canonical whatever the
    order the caller built the dict in."""
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in context.items()):
        raise TypeError("wrap context must map str to str")
    canonical = json.dumps(context, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return b"obsigen-wrap-v1\x00" + kek_id.encode("ascii") + b"\x00" + canonical.encode("utf-8")


_WRAP_VERSION = b"\x01"
GCM_NONCE_BYTES = 12


def pack_wrapped(nonce: bytes, ciphertext: bytes) -> bytes:
    return _WRAP_VERSION + nonce + ciphertext


def unpack_wrapped(blob: bytes) -> tuple[bytes, bytes]:
    # 16 bytes is the GCM tag: anything shorter cannot be one of ours.
    if len(blob) < 1 + GCM_NONCE_BYTES + 16 or blob[:1] != _WRAP_VERSION:
        raise UnwrapFailed("not a wrapped key")
    return blob[1 : 1 + GCM_NONCE_BYTES], blob[1 + GCM_NONCE_BYTES :]


def parse_uri_params(uri: str, scheme: str) -> dict[str, str]:
    """``scheme:k=v;k=v`` to a dict. Values may hold ':' and '/' (``env:X``, URLs), not ';'."""
    head, sep, rest = uri.partition(":")
    if head != scheme:
        raise KeyConfigError(f"not a {scheme}: URI")
    params: dict[str, str] = {}
    if not sep or not rest:
        return params
    for part in rest.split(";"):
        if not part:
            continue
        name, eq, value = part.partition("=")
        if not eq or not name:
            raise KeyConfigError(f"{scheme}: parameter {name!r} has no value")
        params[name.strip()] = value.strip()
    return params


class MetaCache:
    """Key metadata read from a token or KMS, kept ``ttl_s`` seconds so a token check costs no
    round trip; a state change made by another process shows within that time."""

    def __init__(self, ttl_s: float) -> None:
        self._ttl_s = ttl_s
        self._entries: dict[str, tuple[dict[str, Any], float]] = {}

    def get(self, kid: str) -> dict[str, Any] | None:
        entry = self._entries.get(kid)
        if entry is None or time.monotonic() - entry[1] >= self._ttl_s:
            return None
        return entry[0]

    def put(self, kid: str, raw: dict[str, Any]) -> None:
        self._entries[kid] = (raw, time.monotonic())

    def drop(self, kid: str) -> None:
        self._entries.pop(kid, None)
