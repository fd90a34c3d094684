"""Accounts in a real database (SQLite and MariaDB) for the login and second-factor tests."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from obsigen.authz.permissions import Role
from obsigen.db.models import User
from obsigen.identity.tenants import create_tenant, tenant_by_name
from obsigen.identity.users import create_user

PASSWORD = "correct horse battery staple"


@dataclass(frozen=True)
class Account:
    tenant: str
    email: str
    password: str | None
    user_id: str


async def make_account(
    sessions: async_sessionmaker[AsyncSession],
    *,
    password: str | None = PASSWORD,
    status: str = "active",
    tenant: str | None = None,
) -> Account:
    email = f"user-{uuid.uuid4().hex[:10]}@example.org"
    async with sessions.begin() as session:
        if tenant is None:
            tenant_row = await create_tenant(session, f"t-{uuid.uuid4().hex[:10]}")
        else:
            tenant_row = await tenant_by_name(session, tenant)
        created = await create_user(session, tenant_row, email, Role.MEMBER, password)
        created.user.status = status
        return Account(tenant_row.name, email, password, created.user.id)


async def load_user(sessions: async_sessionmaker[AsyncSession], account: Account) -> User:
    async with sessions() as session:
        user = await session.scalar(select(User).where(User.id == account.user_id))
        assert user is not None
        return user
