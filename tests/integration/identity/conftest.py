"""Fixtures of the login and second-factor tests: accounts in SQLite and MariaDB."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.integration.identity.accounts import Account, make_account


@pytest.fixture
async def account(sessions: async_sessionmaker[AsyncSession]) -> Account:
    return await make_account(sessions)
