"""Single-use recovery codes: the way back in when the authenticator is lost.

A code looks like ``7kq2m-x9pfd-3hcwt``: 15 characters from Crockford's base32 alphabet
(no i, l, o, u; typing them is forgiven), 75 random bits. Storage, one row per code::

    code_hash = "<lookup>$<argon2id hash of the whole code>"

The first four characters are the lookup: stored in clear, they pick the one row to verify, so
redeeming costs one Argon2 verification instead of one per outstanding code. What stays
secret is the other 55 bits, behind Argon2id. A plain SHA-256 of the code would also have
been defensible at 75 bits, but a leaked table of fast digests can be searched on GPUs at
billions of guesses a second; Argon2 makes each guess cost a memory-hard hash, so 2^55 of
them are out of reach. The codes are not passwords a human chose, so the lighter OWASP
Argon2id profile (19 MiB, 2 passes) is enough and keeps issuing ten codes quick.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
from typing import Any, cast

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import CursorResult, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from obsigen.db.auth_models import RecoveryCode
from obsigen.db.base import utcnow
from obsigen.db.models import User

ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case
GROUPS = 3
GROUP_LEN = 5
LOOKUP_LEN = 4
DEFAULT_COUNT = 10
MAX_COUNT = 50
_CODE_LEN = GROUPS * GROUP_LEN
# What people type for the letters the alphabet leaves out.
_CONFUSABLE = str.maketrans({"o": "0", "i": "1", "l": "1"})

_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


@functools.cache
def _dummy_hash() -> str:
    return _hasher.hash(secrets.token_hex(16))


def _normalise(code: str) -> str | None:
    flat = "".join(code.split()).replace("-", "").lower().translate(_CONFUSABLE)
    if len(flat) != _CODE_LEN or any(c not in ALPHABET for c in flat):
        return None
    return flat


def _format(flat: str) -> str:
    return "-".join(flat[i : i + GROUP_LEN] for i in range(0, _CODE_LEN, GROUP_LEN))


def _new_codes(count: int) -> list[str]:
    codes: list[str] = []
    lookups: set[str] = set()
    while len(codes) < count:
        flat = "".join(secrets.choice(ALPHABET) for _ in range(_CODE_LEN))
        # Lookups must be unique within the set so that one row answers each code.
        if flat[:LOOKUP_LEN] in lookups:
            continue
        lookups.add(flat[:LOOKUP_LEN])
        codes.append(flat)
    return codes


def _verify(stored: str, flat: str) -> bool:
    try:
        return _hasher.verify(stored, flat)
    except (VerificationError, InvalidHashError):
        return False


async def issue_recovery_codes(
    session: AsyncSession, user: User, count: int = DEFAULT_COUNT
) -> list[str]:
    """A new set of ``count`` codes, replacing every earlier one; shown to the user once."""
    if not 1 <= count <= MAX_COUNT:
        raise ValueError(f"count must be between 1 and {MAX_COUNT}")
    codes = _new_codes(count)
    hashes = await asyncio.to_thread(lambda: [_hasher.hash(flat) for flat in codes])
    await session.execute(
        delete(RecoveryCode).where(
            RecoveryCode.user_id == user.id, RecoveryCode.tenant_id == user.tenant_id
        )
    )
    session.add_all(
        RecoveryCode(
            tenant_id=user.tenant_id, user_id=user.id, code_hash=f"{flat[:LOOKUP_LEN]}${digest}"
        )
        for flat, digest in zip(codes, hashes, strict=True)
    )
    await session.flush()
    return [_format(flat) for flat in codes]


async def redeem_recovery_code(session: AsyncSession, user: User, code: str) -> bool:
    """True once per issued code of ``user``; the row is marked used in the caller's transaction."""
    flat = _normalise(code)
    rows = await session.scalars(
        select(RecoveryCode).where(
            RecoveryCode.user_id == user.id,
            RecoveryCode.tenant_id == user.tenant_id,
            RecoveryCode.used_at.is_(None),
        )
    )
    prefix = f"{flat[:LOOKUP_LEN]}$" if flat is not None else None
    row = next((r for r in rows if prefix is not None and r.code_hash.startswith(prefix)), None)
    stored = row.code_hash.partition("$")[2] if row is not None else _dummy_hash()
    # A miss costs the same one verification as a hit: timing does not tell valid lookups.
    matches = await asyncio.to_thread(_verify, stored, flat or "")
    if row is None or flat is None or not matches:
        return False
    # Conditional on still being unused: of two concurrent redemptions only one wins.
    result = await session.execute(
        update(RecoveryCode)
        .where(RecoveryCode.id == row.id, RecoveryCode.used_at.is_(None))
        .values(used_at=utcnow())
    )
    return cast("CursorResult[Any]", result).rowcount == 1
