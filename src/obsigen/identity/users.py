"""Creating and listing users and binding their role; users whose role needs MFA are enrolled
for TOTP at creation."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

import pyotp
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from obsigen.authz.permissions import MFA_REQUIRED, ROLE_PERMISSIONS, Role
from obsigen.db.models import RoleBinding, Tenant, User
from obsigen.errors import Conflict, InvalidInput
from obsigen.identity.passwords import hash_password

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,189}\.[^@\s]{2,63}$")


def valid_email(value: str) -> bool:
    return _EMAIL.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class CreatedUser:
    user: User
    otpauth_uri: str | None


@dataclass(frozen=True, slots=True)
class UserWithRoles:
    user: User
    # (role, scope) pairs, sorted.
    bindings: tuple[tuple[str, str], ...]


def parse_role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError as exc:
        raise InvalidInput(f"unknown role {value!r}: one of {[r.value for r in Role]}") from exc


def role_needs_mfa(role: Role) -> bool:
    return bool(ROLE_PERMISSIONS[role] & MFA_REQUIRED)


async def create_user(
    session: AsyncSession, tenant: Tenant, email: str, role: Role, password: str | None
) -> CreatedUser:
    email = email.strip().lower()
    if not _EMAIL.fullmatch(email):
        raise InvalidInput("not an e-mail address")
    existing = await session.scalar(
        select(User.id).where(User.tenant_id == tenant.id, User.email == email)
    )
    if existing is not None:
        raise Conflict("a user with this e-mail exists in the tenant")
    try:
        password_hash = hash_password(password) if password is not None else None
    except ValueError as exc:
        raise InvalidInput(str(exc)) from exc
    user = User(tenant_id=tenant.id, email=email, password_hash=password_hash)
    otpauth_uri = None
    if role_needs_mfa(role):
        # Every permission of such a role needs MFA: without a second factor the account
        # could do nothing its role is for.
        user.totp_secret = pyotp.random_base32()
        otpauth_uri = pyotp.TOTP(user.totp_secret).provisioning_uri(
            name=email, issuer_name=f"Obsigen ({tenant.name})"
        )
    session.add(user)
    await session.flush()
    session.add(
        RoleBinding(
            tenant_id=tenant.id, principal_kind="user", principal_id=user.id, role=role.value
        )
    )
    await session.flush()
    return CreatedUser(user=user, otpauth_uri=otpauth_uri)


async def list_users(
    session: AsyncSession, tenant_id: str, limit: int = 100, after: str | None = None
) -> list[UserWithRoles]:
    """The tenant's users by e-mail (``after``: the last e-mail of the previous page), each
    with its role bindings: two queries whatever the page size."""
    query = select(User).where(User.tenant_id == tenant_id)
    if after is not None:
        query = query.where(User.email > after)
    users = (await session.scalars(query.order_by(User.email).limit(limit))).all()
    if not users:
        return []
    rows = await session.execute(
        select(RoleBinding.principal_id, RoleBinding.role, RoleBinding.scope).where(
            RoleBinding.tenant_id == tenant_id,
            RoleBinding.principal_kind == "user",
            RoleBinding.principal_id.in_([user.id for user in users]),
        )
    )
    bindings: defaultdict[str, list[tuple[str, str]]] = defaultdict(list)
    for principal_id, role, scope in rows.all():
        bindings[principal_id].append((role, scope))
    return [UserWithRoles(user, tuple(sorted(bindings[user.id]))) for user in users]
