"""TOTP: valid codes pass once, drift of one step is forgiven, replays and guesses are not."""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs, urlparse

import pyotp
import pytest

from obsigen.db.models import User
from obsigen.ephemeral.memory import MemoryStore
from obsigen.identity.totp import (
    PENDING_TTL_S,
    STEP_S,
    begin_totp_enrolment,
    confirm_totp_enrolment,
    verify_totp,
)

# The middle of a step, so that "one step later" is never ambiguous.
NOW = 1_700_000_000 - (1_700_000_000 % STEP_S) + STEP_S / 2
FIXED_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


def other_code(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def make_user(secret: str | None = None) -> User:
    return User(
        id=uuid.uuid4().hex,
        tenant_id=uuid.uuid4().hex,
        email="ada@example.org",
        totp_secret=secret if secret is not None else pyotp.random_base32(),
    )


def code_at(user: User, steps: int, now: float = NOW) -> str:
    assert user.totp_secret is not None
    return pyotp.TOTP(user.totp_secret).at(now + steps * STEP_S)


async def test_current_code_is_accepted() -> None:
    user = make_user()
    assert await verify_totp(MemoryStore(), user, code_at(user, 0), now=NOW)


async def test_code_from_the_wall_clock_is_accepted() -> None:
    user = make_user()
    assert user.totp_secret is not None
    assert await verify_totp(MemoryStore(), user, pyotp.TOTP(user.totp_secret).now())


async def test_surrounding_whitespace_is_forgiven() -> None:
    user = make_user()
    assert await verify_totp(MemoryStore(), user, f" {code_at(user, 0)}\n", now=NOW)


async def test_a_code_is_accepted_once() -> None:
    store = MemoryStore()
    user = make_user()
    code = code_at(user, 0)
    assert await verify_totp(store, user, code, now=NOW)
    assert not await verify_totp(store, user, code, now=NOW)
    # Still refused later in the window, where the code would otherwise still be valid.
    assert not await verify_totp(store, user, code, now=NOW + STEP_S)


async def test_the_next_code_works_after_one_was_used() -> None:
    store = MemoryStore()
    user = make_user()
    assert await verify_totp(store, user, code_at(user, 0), now=NOW)
    assert await verify_totp(store, user, code_at(user, 1), now=NOW + STEP_S)


async def test_an_older_code_is_refused_once_a_newer_one_was_used() -> None:
    store = MemoryStore()
    user = make_user()
    older = code_at(user, -1)
    assert await verify_totp(store, user, code_at(user, 0), now=NOW)
    assert not await verify_totp(store, user, older, now=NOW)


async def test_used_codes_are_per_user() -> None:
    store = MemoryStore()
    secret = pyotp.random_base32()
    alice, bob = make_user(secret), make_user(secret)
    assert await verify_totp(store, alice, code_at(alice, 0), now=NOW)
    assert await verify_totp(store, bob, code_at(bob, 0), now=NOW)


@pytest.mark.parametrize("steps", [-1, 1])
async def test_one_step_of_drift_is_accepted(steps: int) -> None:
    user = make_user()
    assert await verify_totp(MemoryStore(), user, code_at(user, steps), now=NOW)


@pytest.mark.parametrize("steps", [-2, 2, -10])
async def test_two_steps_of_drift_are_refused(steps: int) -> None:
    # A fixed secret: a random one could, once in a million, give equal codes for two steps.
    user = make_user(FIXED_SECRET)
    code = code_at(user, steps)
    assert code not in {code_at(user, s) for s in (-1, 0, 1)}
    assert not await verify_totp(MemoryStore(), user, code, now=NOW)


@pytest.mark.parametrize(
    "garbage",
    ["", "12345", "1234567", "12345a", "abcdef", "１２３４５６", "١٢٣٤٥٦", "12 345", "-12345"],
)
async def test_malformed_codes_are_refused(garbage: str) -> None:
    user = make_user()
    assert not await verify_totp(MemoryStore(), user, garbage, now=NOW)


async def test_full_width_digits_of_the_right_code_are_refused() -> None:
    user = make_user()
    code = code_at(user, 0)
    wide = code.translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    assert not await verify_totp(MemoryStore(), user, wide, now=NOW)
    assert await verify_totp(MemoryStore(), user, code, now=NOW)


async def test_a_user_without_a_secret_never_passes() -> None:
    user = make_user()
    code = code_at(user, 0)
    user.totp_secret = None
    assert not await verify_totp(MemoryStore(), user, code, now=NOW)


# --- enrolment ---------------------------------------------------------------------------


async def test_enrolment_installs_the_secret_after_a_valid_code() -> None:
    store = MemoryStore()
    user = make_user()
    old_secret = user.totp_secret
    uri = await begin_totp_enrolment(store, user, "Obsigen (acme)")

    parsed = urlparse(uri)
    assert parsed.scheme == "otpauth"
    assert parsed.netloc == "totp"
    query = parse_qs(parsed.query)
    assert query["issuer"] == ["Obsigen (acme)"]
    new_secret = query["secret"][0]
    assert new_secret != old_secret
    # Until confirmed, the old secret stays in force.
    assert user.totp_secret == old_secret

    totp = pyotp.TOTP(new_secret)
    assert not await confirm_totp_enrolment(store, user, other_code(totp.at(NOW)), now=NOW)
    assert user.totp_secret == old_secret
    code = totp.at(NOW)
    assert await confirm_totp_enrolment(store, user, code, now=NOW)
    assert user.totp_secret == new_secret
    # The pending secret is gone, and the confirming code cannot be replayed at login.
    assert not await confirm_totp_enrolment(store, user, totp.at(NOW + STEP_S), now=NOW + STEP_S)
    assert not await verify_totp(store, user, code, now=NOW)
    assert await verify_totp(store, user, totp.at(NOW + STEP_S), now=NOW + STEP_S)


async def test_enrolment_accepts_the_uri_as_an_authenticator_app_reads_it() -> None:
    store = MemoryStore()
    user = make_user(secret="")
    app = pyotp.parse_uri(await begin_totp_enrolment(store, user, "Obsigen"))
    assert isinstance(app, pyotp.TOTP)
    assert await confirm_totp_enrolment(store, user, app.at(NOW), now=NOW)
    assert await verify_totp(store, user, app.at(NOW + STEP_S), now=NOW + STEP_S)


async def test_enrolment_expires() -> None:
    clock = [0.0]
    store = MemoryStore(clock=lambda: clock[0])
    user = make_user(secret="")
    uri = await begin_totp_enrolment(store, user, "Obsigen")
    secret = parse_qs(urlparse(uri).query)["secret"][0]
    clock[0] += PENDING_TTL_S + 1
    assert not await confirm_totp_enrolment(store, user, pyotp.TOTP(secret).at(NOW), now=NOW)
    assert not user.totp_secret


async def test_a_new_enrolment_replaces_the_pending_secret() -> None:
    store = MemoryStore()
    user = make_user(secret="")
    first = parse_qs(urlparse(await begin_totp_enrolment(store, user, "O")).query)["secret"][0]
    second = parse_qs(urlparse(await begin_totp_enrolment(store, user, "O")).query)["secret"][0]
    assert first != second
    first_code, second_code = pyotp.TOTP(first).at(NOW), pyotp.TOTP(second).at(NOW)
    if first_code != second_code:
        assert not await confirm_totp_enrolment(store, user, first_code, now=NOW)
    assert await confirm_totp_enrolment(store, user, second_code, now=NOW)
    assert user.totp_secret == second


async def test_confirmation_needs_a_pending_enrolment() -> None:
    user = make_user()
    assert not await confirm_totp_enrolment(MemoryStore(), user, code_at(user, 0), now=NOW)
