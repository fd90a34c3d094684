"""TOTP enrolment persists on SQLite and MariaDB: the confirmed secret is what the next
transaction verifies against, and an abandoned enrolment changes nothing."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pyotp
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.integration.identity.accounts import Account, load_user

from obsigen.db.models import User
from obsigen.ephemeral.memory import MemoryStore
from obsigen.identity.totp import STEP_S, begin_totp_enrolment, confirm_totp_enrolment, verify_totp

Sessions = async_sessionmaker[AsyncSession]
NOW = 1_800_000_000 - (1_800_000_000 % STEP_S) + STEP_S / 2


def secret_of(uri: str) -> str:
    return parse_qs(urlparse(uri).query)["secret"][0]


async def test_confirmed_secret_is_stored(sessions: Sessions, account: Account) -> None:
    store = MemoryStore()
    async with sessions() as session:
        user = await session.get(User, account.user_id)
        assert user is not None
        secret = secret_of(await begin_totp_enrolment(store, user, "Obsigen (test)"))

    async with sessions.begin() as session:
        user = await session.get(User, account.user_id)
        assert user is not None
        assert await confirm_totp_enrolment(store, user, pyotp.TOTP(secret).at(NOW), now=NOW)

    stored = await load_user(sessions, account)
    assert stored.totp_secret == secret
    later = NOW + STEP_S
    assert await verify_totp(store, stored, pyotp.TOTP(secret).at(later), now=later)


async def test_unconfirmed_enrolment_changes_nothing(sessions: Sessions, account: Account) -> None:
    store = MemoryStore()
    async with sessions.begin() as session:
        user = await session.get(User, account.user_id)
        assert user is not None
        secret = secret_of(await begin_totp_enrolment(store, user, "Obsigen (test)"))
        code = pyotp.TOTP(secret).at(NOW)
        wrong = f"{(int(code) + 1) % 1_000_000:06d}"
        assert not await confirm_totp_enrolment(store, user, wrong, now=NOW)

    stored = await load_user(sessions, account)
    assert stored.totp_secret is None
    assert not await verify_totp(store, stored, code, now=NOW)
