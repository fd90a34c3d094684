"""SCIM bearer tokens: random, shown once, stored as a SHA-256 digest, bounded in age.

Format ``scim_<lookup>_<secret>``: the lookup finds the row without scanning, the secret has 256
bits of entropy (a fast digest suffices) and is compared in constant time. Every token expires
at most ``secrets.max_age_days.scim_token`` after its creation; a token is also refused once it
is older than that maximum, so lowering the setting retires old tokens at once.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from obsigen.db.base import utcnow
from obsigen.db.models import Tenant
from obsigen.db.scim_models import ScimToken
from obsigen.errors import InvalidInput, NotFound

PREFIX = "scim_"
_TOKEN = re.compile(r"^scim_([a-z0-9]{16})_([A-Za-z0-9_-]{43})$")
_LOOKUP_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


@dataclass(frozen=True, slots=True)
class CreatedScimToken:
    token: ScimToken
    secret: str  # the only time the whole token exists outside the caller


@dataclass(frozen=True, slots=True)
class ScimCaller:
    """Who is calling the SCIM endpoints: one token of one tenant."""

    tenant_id: str
    token_id: str

    @property
    def actor(self) -> dict[str, str]:
        return {"kind": "scim", "id": self.token_id}


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def token_lifetime(expires_in: timedelta | None, max_age: timedelta) -> timedelta:
    if expires_in is None:
        return max_age
    if expires_in <= timedelta(0):
        raise InvalidInput("a SCIM token's lifetime must be positive")
    if expires_in > max_age:
        raise InvalidInput(
            f"a SCIM token lives at most {max_age.days} days (secrets.max_age_days.scim_token)"
        )
    return expires_in


async def create_token(
    session: AsyncSession,
    tenant: Tenant,
    name: str,
    expires_in: timedelta | None,
    *,
    max_age: timedelta,
) -> CreatedScimToken:
    name = name.strip()
    if not 1 <= len(name) <= 100:
        raise InvalidInput("token name: 1-100 characters")
    lifetime = token_lifetime(expires_in, max_age)
    lookup = "".join(secrets.choice(_LOOKUP_ALPHABET) for _ in range(16))
    secret = secrets.token_urlsafe(32)
    row = ScimToken(
        tenant_id=tenant.id,
        name=name,
        lookup=lookup,
        secret_hash=_digest(secret),
        expires_at=utcnow() + lifetime,
    )
    session.add(row)
    await session.flush()
    return CreatedScimToken(token=row, secret=f"{PREFIX}{lookup}_{secret}")


async def verify_token(
    session: AsyncSession, presented: str, *, max_age: timedelta, now: datetime | None = None
) -> ScimCaller | None:
    """The caller for a valid, unexpired, unrevoked token; None otherwise (never says why)."""
    match = _TOKEN.fullmatch(presented)
    if match is None:
        return None
    lookup, secret = match.groups()
    row = await session.scalar(select(ScimToken).where(ScimToken.lookup == lookup))
    # Compare a digest even for an unknown lookup, so timing does not tell the two apart.
    stored = row.secret_hash if row is not None else _digest("")
    if not hmac.compare_digest(stored, _digest(secret)) or row is None:
        return None
    now = now or utcnow()
    if row.revoked_at is not None or row.expires_at <= now or now - row.created_at > max_age:
        return None
    # last_used_at at minute precision: one write per token per minute, not per request.
    if row.last_used_at is None or now - row.last_used_at > timedelta(minutes=1):
        await session.execute(
            update(ScimToken).where(ScimToken.id == row.id).values(last_used_at=now)
        )
    return ScimCaller(tenant_id=row.tenant_id, token_id=row.id)


async def revoke_token(session: AsyncSession, tenant: Tenant, token_id: str) -> ScimToken:
    row = await session.scalar(
        select(ScimToken).where(ScimToken.tenant_id == tenant.id, ScimToken.id == token_id)
    )
    if row is None:
        raise NotFound("no such SCIM token")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        await session.flush()
    return row


async def list_tokens(session: AsyncSession, tenant: Tenant) -> list[ScimToken]:
    rows = await session.scalars(
        select(ScimToken)
        .where(ScimToken.tenant_id == tenant.id)
        .order_by(ScimToken.created_at, ScimToken.id)
    )
    return list(rows.all())
