"""One-time codes that hand an SSO sign-in from the IdP's redirect to the web UI.

The IdP sends the browser to our callback (OIDC) or ACS (SAML) as a top-level navigation, so
the tokens cannot be answered to script there. The route keeps them behind a one-time code and
redirects to ``/ui/sso/complete#code=...``; the page's script trades the code for the tokens
(``POST /auth/sso/exchange``). The code travels in the fragment, which browsers never send to
a server or put in a ``Referer``.

Guarantees:

- a code is 256 random bits, single use (an atomic ``take``: the first attempt spends it,
  whatever its outcome, so a code cannot be guessed at or retried), valid ``CODE_TTL_S``;
- the store holds neither the code nor the tokens in clear: the key is a SHA-256 of the code
  and the tokens are sealed with AES-256-GCM under a key derived from the code, so a reader
  of Redis learns nothing usable;
- it is bound to its tenant (the tenant id is the ciphertext's associated data as well as a
  compared field) and to the browser that finished the sign-in (the SHA-256 of a random value
  kept in an HttpOnly cookie), so a code captured from someone else's redirect signs nobody in
  elsewhere (login CSRF).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from obsigen.ephemeral.interfaces import EphemeralStore
from obsigen.errors import ObsigenError

CODE_TTL_S = 60
CODE_BYTES = 32
_KEY_PREFIX = "sso-code:"
# token_urlsafe(32): 43 characters of the base64url alphabet; anything else is not ours.
_CODE_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")


class SsoCodeRefused(ObsigenError):
    """One answer for an unknown, spent, expired, other tenant's or other browser's code, so
    the refusal tells a guesser nothing."""

    status = 400
    type_slug = "sso-code-invalid"
    title = "Sign-in code not valid"


REFUSAL = "this sign-in code is not valid: it is unknown, expired or already used"


@dataclass(frozen=True, slots=True)
class IssuedCode:
    code: str
    # Goes into the HttpOnly cookie; only its digest is stored with the code.
    browser_binding: str


def _now() -> float:
    # Module-level so tests can move the clock; the store's TTL is the other, independent limit.
    return time.time()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def code_key(code: str) -> str:
    """Where the code's record lives: a digest, so the store never holds a usable code."""
    return _KEY_PREFIX + hashlib.sha256(b"obsigen sso code id\x00" + code.encode()).hexdigest()


def _sealing_key(code: str) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"obsigen sso code seal"
    ).derive(code.encode())


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class SsoCodes:
    def __init__(self, store: EphemeralStore, ttl_s: float = CODE_TTL_S) -> None:
        if not 0 < ttl_s <= CODE_TTL_S:
            raise ValueError(f"a sign-in code lives at most {CODE_TTL_S} s")
        self._store = store
        self._ttl_s = ttl_s

    async def issue(self, tenant_id: str, payload: dict[str, Any]) -> IssuedCode:
        """Seal ``payload`` (the token pair and where to go) behind a new code."""
        code = secrets.token_urlsafe(CODE_BYTES)
        binding = secrets.token_urlsafe(32)
        nonce = os.urandom(12)
        sealed = AESGCM(_sealing_key(code)).encrypt(
            nonce, json.dumps(payload).encode(), tenant_id.encode()
        )
        record = {
            "tenant": tenant_id,
            "browser": _digest(binding),
            "expires": _now() + self._ttl_s,
            "nonce": _b64(nonce),
            "sealed": _b64(sealed),
        }
        await self._store.set(code_key(code), json.dumps(record).encode(), self._ttl_s)
        return IssuedCode(code, binding)

    async def redeem(self, code: str, tenant_id: str | None, browser_binding: str | None) -> Any:
        """The payload, once; ``SsoCodeRefused`` for anything but the code's first use by the
        browser that received it, for its tenant, in time."""
        if not _CODE_SHAPE.fullmatch(code):
            raise SsoCodeRefused(REFUSAL)
        raw = await self._store.take(code_key(code))
        if raw is None or tenant_id is None or browser_binding is None:
            raise SsoCodeRefused(REFUSAL)
        try:
            record = json.loads(raw)
            same_tenant = hmac.compare_digest(str(record["tenant"]), tenant_id)
            same_browser = hmac.compare_digest(str(record["browser"]), _digest(browser_binding))
            if not (same_tenant and same_browser) or float(record["expires"]) <= _now():
                raise SsoCodeRefused(REFUSAL)
            opened = AESGCM(_sealing_key(code)).decrypt(
                _unb64(record["nonce"]), _unb64(record["sealed"]), tenant_id.encode()
            )
            return json.loads(opened)
        except (KeyError, TypeError, ValueError, InvalidTag) as exc:
            raise SsoCodeRefused(REFUSAL) from exc
