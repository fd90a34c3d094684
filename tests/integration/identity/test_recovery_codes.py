"""Recovery codes on SQLite and MariaDB: random, shown once, stored hashed, each good once."""

from __future__ import annotations

import asyncio
import re

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.integration.identity.accounts import Account, load_user, make_account

from obsigen.db.auth_models import RecoveryCode
from obsigen.identity.recovery import (
    ALPHABET,
    LOOKUP_LEN,
    issue_recovery_codes,
    redeem_recovery_code,
)

Sessions = async_sessionmaker[AsyncSession]
CODE = re.compile(r"^[0-9a-hjkmnp-tv-z]{5}-[0-9a-hjkmnp-tv-z]{5}-[0-9a-hjkmnp-tv-z]{5}$")


async def issue(sessions: Sessions, account: Account, count: int = 10) -> list[str]:
    async with sessions.begin() as session:
        user = await load_user(sessions, account)
        return await issue_recovery_codes(session, await session.merge(user), count)


async def redeem(sessions: Sessions, account: Account, code: str) -> bool:
    async with sessions.begin() as session:
        user = await session.merge(await load_user(sessions, account))
        return await redeem_recovery_code(session, user, code)


async def stored(sessions: Sessions, account: Account) -> list[RecoveryCode]:
    async with sessions() as session:
        rows = await session.scalars(
            select(RecoveryCode).where(RecoveryCode.user_id == account.user_id)
        )
        return list(rows)


def wrong_secret(code: str) -> str:
    """The same lookup with one character of the secret part changed."""
    last = code[-1]
    return code[:-1] + ALPHABET[(ALPHABET.index(last) + 1) % len(ALPHABET)]


async def test_codes_are_random_and_typable(sessions: Sessions, account: Account) -> None:
    codes = await issue(sessions, account)
    assert len(codes) == 10
    assert all(CODE.fullmatch(code) for code in codes), codes
    assert len(set(codes)) == 10
    # 15 characters of a 32-letter alphabet: 75 bits, drawn afresh for every code.
    assert len(ALPHABET) == 32
    assert len({code[:LOOKUP_LEN] for code in codes}) == 10


async def test_each_code_works_once(sessions: Sessions, account: Account) -> None:
    codes = await issue(sessions, account, count=3)
    for code in codes:
        assert await redeem(sessions, account, code)
    for code in codes:
        assert not await redeem(sessions, account, code)
    assert all(row.used_at is not None for row in await stored(sessions, account))


async def test_codes_are_stored_hashed(sessions: Sessions, account: Account) -> None:
    codes = await issue(sessions, account)
    rows = await stored(sessions, account)
    assert len(rows) == 10
    by_lookup = {row.code_hash.partition("$")[0]: row.code_hash for row in rows}
    for code in codes:
        flat = code.replace("-", "")
        code_hash = by_lookup[flat[:LOOKUP_LEN]]
        # Only the lookup is in clear; the rest is an Argon2id hash of the whole code.
        assert code_hash.startswith(f"{flat[:LOOKUP_LEN]}$$argon2id$")
        assert flat[LOOKUP_LEN:] not in code_hash
        assert code not in code_hash


async def test_a_new_set_replaces_the_old_one(sessions: Sessions, account: Account) -> None:
    old = await issue(sessions, account, count=4)
    assert await redeem(sessions, account, old[0])
    new = await issue(sessions, account, count=4)

    assert len(await stored(sessions, account)) == 4
    for code in old[1:]:
        assert not await redeem(sessions, account, code)
    for code in new:
        assert await redeem(sessions, account, code)


async def test_typing_variants_are_forgiven(sessions: Sessions, account: Account) -> None:
    codes = await issue(sessions, account, count=3)
    # Upper case, spaces for hyphens, or none at all.
    assert await redeem(sessions, account, codes[0].upper())
    assert await redeem(sessions, account, " " + codes[1].replace("-", " ") + " ")
    typed = codes[2].replace("-", "").replace("0", "O").replace("1", "l")
    assert await redeem(sessions, account, typed)


@pytest.mark.parametrize(
    "garbage",
    ["", "-----", "abcde-fghjk", "abcde-fghjk-mnpqr-stvwx", "abcde-fghjk-mnpqu", "ü" * 15],
)
async def test_malformed_codes_are_refused(
    sessions: Sessions, account: Account, garbage: str
) -> None:
    await issue(sessions, account, count=2)
    assert not await redeem(sessions, account, garbage)


async def test_a_wrong_secret_behind_a_valid_lookup_is_refused(
    sessions: Sessions, account: Account
) -> None:
    codes = await issue(sessions, account, count=2)
    assert not await redeem(sessions, account, wrong_secret(codes[0]))
    # The failed try did not use up the real code.
    assert await redeem(sessions, account, codes[0])


async def test_codes_belong_to_their_user(sessions: Sessions, account: Account) -> None:
    other = await make_account(sessions, tenant=account.tenant)
    codes = await issue(sessions, account, count=2)
    await issue(sessions, other, count=2)
    assert not await redeem(sessions, other, codes[0])
    assert await redeem(sessions, account, codes[0])


async def test_a_user_without_codes_is_refused(sessions: Sessions, account: Account) -> None:
    assert not await redeem(sessions, account, "abcde-fghjk-mnpqr")


async def test_count_is_bounded(sessions: Sessions, account: Account) -> None:
    with pytest.raises(ValueError, match="count"):
        await issue(sessions, account, count=0)


@pytest.mark.mariadb_only
async def test_two_concurrent_redemptions_of_one_code_let_one_through(
    sessions: Sessions, account: Account
) -> None:
    (code,) = await issue(sessions, account, count=1)
    user = await load_user(sessions, account)
    async with sessions() as first, sessions() as second:
        assert await redeem_recovery_code(first, await first.merge(user), code)
        # The second transaction read the row before the first committed and now waits on it.
        racing = asyncio.create_task(redeem_recovery_code(second, await second.merge(user), code))
        await asyncio.sleep(0.3)
        assert not racing.done()
        await first.commit()
        assert not await asyncio.wait_for(racing, timeout=10)
        await second.commit()
