"""Service API keys: random, shown once, stored as a SHA-256 digest, with expiry.

Format ``obs_<lookup>_<secret>``. The lookup part finds the row without scanning; the
secret has 256 bits of entropy, so a fast digest is enough (no password stretching needed).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from obsigen.authz.permissions import Role
from obsigen.authz.principal import Principal
from obsigen.db.base import utcnow
from obsigen.db.models import ApiKey, RoleBinding, Tenant
from obsigen.errors import InvalidInput
from obsigen.identity.principals import load_principal

PREFIX = "obs_"
_KEY = re.compile(r"^obs_([A-Za-z0-9]{16})_([A-Za-z0-9_-]{43})$")
_DURATION = re.compile(r"^(\d{1,5})([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


@dataclass(frozen=True, slots=True)
class CreatedApiKey:
    api_key: ApiKey
    key: str  # the only time the full key exists outside the caller


def parse_duration(value: str) -> timedelta:
    match = _DURATION.fullmatch(value.strip())
    if match is None or int(match.group(1)) == 0:
        raise InvalidInput("duration like 90d, 12h, 30m or 2w")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def looks_like_api_key(token: str) -> bool:
    return token.startswith(PREFIX)


async def create_api_key(
    session: AsyncSession,
    tenant: Tenant,
    name: str,
    role: Role,
    expires_in: timedelta | None,
) -> CreatedApiKey:
    name = name.strip()
    if not 1 <= len(name) <= 100:
        raise InvalidInput("key name: 1-100 characters")
    lookup = "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(16))
    secret = secrets.token_urlsafe(32)
    expires_at = utcnow() + expires_in if expires_in is not None else None
    api_key = ApiKey(
        tenant_id=tenant.id,
        name=name,
        lookup=lookup,
        secret_hash=_digest(secret),
        expires_at=expires_at,
    )
    session.add(api_key)
    await session.flush()
    session.add(
        RoleBinding(
            tenant_id=tenant.id, principal_kind="apikey", principal_id=api_key.id, role=role
        )
    )
    await session.flush()
    return CreatedApiKey(api_key=api_key, key=f"{PREFIX}{lookup}_{secret}")


async def authenticate_api_key(
    session: AsyncSession, token: str, now: datetime | None = None
) -> Principal | None:
    """The principal for a valid, unexpired, unrevoked key; None otherwise (never says why)."""
    match = _KEY.fullmatch(token)
    if match is None:
        return None
    lookup, secret = match.groups()
    api_key = await session.scalar(select(ApiKey).where(ApiKey.lookup == lookup))
    if api_key is None or not hmac.compare_digest(api_key.secret_hash, _digest(secret)):
        return None
    now = now or utcnow()
    if api_key.revoked_at is not None or (api_key.expires_at and api_key.expires_at <= now):
        return None
    return await load_principal(session, api_key.tenant_id, "apikey", api_key.id)
