"""Creating users and binding their role; admins are enrolled for TOTP at creation."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pyotp
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from obsigen.authz.permissions import Role
from obsigen.db.models import RoleBinding, Tenant, User
from obsigen.errors import Conflict, InvalidInput
from obsigen.identity.passwords import hash_password

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,189}\.[^@\s]{2,63}$")


@dataclass(frozen=True, slots=True)
class CreatedUser:
    user: User
    otpauth_uri: str | None


def parse_role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError as exc:
        raise InvalidInput(f"unknown role {value!r}: one of {[r.value for r in Role]}") from exc


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
    if role is Role.ADMIN:
        # Every admin action needs MFA, so an admin cannot exist without a second factor.
        user.totp_secret = pyotp.random_base32()
        otpauth_uri = pyotp.TOTP(user.totp_secret).provisioning_uri(
            name=email, issuer_name=f"Obsigen ({tenant.name})"
        )
    session.add(user)
    await session.flush()
    session.add(
        RoleBinding(tenant_id=tenant.id, principal_kind="user", principal_id=user.id, role=role)
    )
    await session.flush()
    return CreatedUser(user=user, otpauth_uri=otpauth_uri)
