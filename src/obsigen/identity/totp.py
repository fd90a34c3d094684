"""TOTP (RFC 6238): six digits, 30-second steps, one step of clock drift either way.

A code is accepted once: the accepted time step is claimed in the shared store, and so are the
steps before it, so neither the same code nor an older one seen over the user's shoulder can be
replayed while it would still be inside the window. Guess limiting is the caller's job (the
login and step-up routes count wrong codes per user), since only the caller knows which
attempts belong together.
"""

from __future__ import annotations

import hmac
import re
import time

import pyotp

from obsigen.db.models import User
from obsigen.ephemeral.interfaces import EphemeralStore

STEP_S = 30
DIGITS = 6
# Steps of drift accepted either side of the current one.
VALID_WINDOW = 1
PENDING_TTL_S = 600
# A step stays acceptable until VALID_WINDOW steps after its own has passed; the marker must
# outlive that (one more step of margin for store and clock skew between server processes).
_USED_TTL_S = (2 * VALID_WINDOW + 2) * STEP_S
_CODE = re.compile(rf"[0-9]{{{DIGITS}}}")


def _used_key(user_id: str, step: int) -> str:
    return f"totp:{user_id}:{step}"


def _pending_key(user_id: str) -> str:
    return f"totp:pending:{user_id}"


def _matching_step(secret: str, code: str, now: float) -> int | None:
    # ASCII digits only: str.isdigit() would also accept other scripts' digits.
    if _CODE.fullmatch(code) is None:
        return None
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_S)
    current = int(now // STEP_S)
    found = None
    # Every candidate is compared (no early exit) in constant time.
    for step in range(current - VALID_WINDOW, current + VALID_WINDOW + 1):
        if hmac.compare_digest(totp.at(step * STEP_S), code):
            found = step
    return found


async def _accept_once(store: EphemeralStore, user_id: str, step: int) -> bool:
    if not await store.claim(_used_key(user_id, step), _USED_TTL_S):
        return False
    # Older steps of the window go with it: once a newer code was used, an older one seen
    # elsewhere must not still open the account.
    for older in range(step - 2 * VALID_WINDOW, step):
        await store.claim(_used_key(user_id, older), _USED_TTL_S)
    return True


async def verify_totp(
    store: EphemeralStore, user: User, code: str, *, now: float | None = None
) -> bool:
    """True once for a valid current code of ``user``; False for anything else.

    ``now`` (Unix seconds) is for tests; the server uses the wall clock.
    """
    if not user.totp_secret:
        return False
    step = _matching_step(user.totp_secret, code.strip(), time.time() if now is None else now)
    if step is None:
        return False
    return await _accept_once(store, user.id, step)


async def begin_totp_enrolment(store: EphemeralStore, user: User, issuer: str) -> str:
    """A new secret, pending for ``PENDING_TTL_S`` until a code confirms it: the otpauth URI.

    The current secret (if any) stays in force until then, so an abandoned enrolment does
    not lock the user out. A second call replaces the pending secret.
    """
    secret = pyotp.random_base32()
    await store.set(_pending_key(user.id), secret.encode(), PENDING_TTL_S)
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_S).provisioning_uri(
        name=user.email, issuer_name=issuer
    )


async def confirm_totp_enrolment(
    store: EphemeralStore, user: User, code: str, *, now: float | None = None
) -> bool:
    """Sets ``user.totp_secret`` (the caller commits) when ``code`` fits the pending secret."""
    pending = await store.get(_pending_key(user.id))
    if pending is None:
        return False
    secret = pending.decode()
    step = _matching_step(secret, code.strip(), time.time() if now is None else now)
    # Claimed like a login code: the confirming code cannot be replayed at the next login.
    if step is None or not await _accept_once(store, user.id, step):
        return False
    await store.delete(_pending_key(user.id))
    user.totp_secret = secret
    return True
