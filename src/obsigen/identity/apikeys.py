"""Service API keys: random, shown once, stored as a SHA-256 digest, with a role and an expiry.

Format ``obs_<lookup>_<secret>``. The lookup part finds the row without scanning; the
secret has 256 bits of entropy, so a fast digest is enough (no password stretching needed).

Every key expires: no lifetime given means the longest allowed (``auth.apikey_max_days``), and a
longer one is refused. A key's role must not carry administrative permissions: those need a
second factor, which a bearer secret can never prove (docs/rbac.md).
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

from obsigen.authz.principal import Principal
from obsigen.authz.roles import ensure_key_assignable, resolve_role
from obsigen.config import AuthSettings
from obsigen.db.base import utcnow
from obsigen.db.models import ApiKey, RoleBinding, Tenant, User
from obsigen.errors import InvalidInput, NotFound
from obsigen.identity.principals import load_principal

PREFIX = "obs_"
_KEY = re.compile(r"^obs_([A-Za-z0-9]{16})_([A-Za-z0-9_-]{43})$")
_DURATION = re.compile(r"^(\d{1,5})([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
# The configured default, for callers without settings at hand (tests, scripts).
DEFAULT_MAX_AGE = timedelta(days=AuthSettings().apikey_max_days)


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


def key_lifetime(expires_in: timedelta | None, max_age: timedelta) -> timedelta:
    if expires_in is None:
        return max_age
    if expires_in <= timedelta(0):
        raise InvalidInput("an API key's lifetime must be positive")
    if expires_in > max_age:
        raise InvalidInput(
            f"an API key lives at most {_describe(max_age)} (auth.apikey_max_days);"
            " create a new key before this one expires"
        )
    return expires_in


def _describe(age: timedelta) -> str:
    if age.seconds == 0 and age.microseconds == 0:
        return f"{age.days} days"
    return str(age)


async def create_api_key(
    session: AsyncSession,
    tenant: Tenant,
    name: str,
    role: str,
    expires_in: timedelta | None,
    *,
    max_age: timedelta = DEFAULT_MAX_AGE,
    owner_user_id: str | None = None,
) -> CreatedApiKey:
    """A key holding ``role`` (built-in or the tenant's custom role) for ``expires_in``.

    ``owner_user_id`` names the user the key acts for: it stops working when that user is
    deactivated or deprovisioned (docs/scim.md).
    """
    name = name.strip()
    if not 1 <= len(name) <= 100:
        raise InvalidInput("key name: 1-100 characters")
    lifetime = key_lifetime(expires_in, max_age)
    role_name = str(role)  # a Role member prints as its value
    try:
        info = await resolve_role(session, tenant.id, role_name)
    except NotFound:
        raise InvalidInput(f"unknown role {role_name!r}") from None
    ensure_key_assignable(info)
    if owner_user_id is not None:
        owner = await session.scalar(
            select(User.id).where(User.tenant_id == tenant.id, User.id == owner_user_id)
        )
        if owner is None:
            raise InvalidInput("the key's owner is not a user of this tenant")
    lookup = "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(16))
    secret = secrets.token_urlsafe(32)
    api_key = ApiKey(
        tenant_id=tenant.id,
        name=name,
        lookup=lookup,
        secret_hash=_digest(secret),
        expires_at=utcnow() + lifetime,
        owner_user_id=owner_user_id,
    )
    session.add(api_key)
    await session.flush()
    session.add(
        RoleBinding(
            tenant_id=tenant.id, principal_kind="apikey", principal_id=api_key.id, role=info.name
        )
    )
    await session.flush()
    return CreatedApiKey(api_key=api_key, key=f"{PREFIX}{lookup}_{secret}")


async def authenticate_api_key(
    session: AsyncSession,
    token: str,
    now: datetime | None = None,
    *,
    max_age: timedelta = DEFAULT_MAX_AGE,
) -> Principal | None:
    """The principal for a valid, unexpired, unrevoked key; None otherwise (never says why).

    A key made before lifetimes were mandatory (no ``expires_at``) ends ``max_age`` after its
    creation, so no key lives unbounded.
    """
    match = _KEY.fullmatch(token)
    if match is None:
        return None
    lookup, secret = match.groups()
    api_key = await session.scalar(select(ApiKey).where(ApiKey.lookup == lookup))
    if api_key is None or not hmac.compare_digest(api_key.secret_hash, _digest(secret)):
        return None
    now = now or utcnow()
    expires_at = api_key.expires_at or api_key.created_at + max_age
    if api_key.revoked_at is not None or expires_at <= now:
        return None
    if api_key.owner_user_id is not None:
        # Deprovisioning revokes the owner's keys; this also stops a key whose revocation
        # was missed (e.g. the owner was deactivated by something other than SCIM).
        status = await session.scalar(
            select(User.status).where(
                User.tenant_id == api_key.tenant_id, User.id == api_key.owner_user_id
            )
        )
        if status != "active":
            return None
    return await load_principal(session, api_key.tenant_id, "apikey", api_key.id)
