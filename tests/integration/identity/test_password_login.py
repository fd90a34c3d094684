"""Password login on SQLite and MariaDB: one answer for every failure, the same Argon2 work for
known and unknown accounts, lockout by account (existing or not) and by source address."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.conftest import REDIS_URL, port_open, require_service
from tests.integration.identity.accounts import PASSWORD, Account, make_account

import obsigen.identity.login as login_module
from obsigen.db.models import User
from obsigen.ephemeral.interfaces import EphemeralStore
from obsigen.ephemeral.memory import MemoryStore
from obsigen.ephemeral.redis import RedisStore
from obsigen.errors import TooManyAttempts, Unauthenticated
from obsigen.identity.login import LoginFailed, LoginThrottled, PasswordLogin, dummy_hash
from obsigen.identity.passwords import verify_password
from obsigen.web.problems import problem

Sessions = async_sessionmaker[AsyncSession]
WRONG = "not the password at all"
MAX_FAILURES = 3
WINDOW_S = 60
LOCKOUT_S = 120


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Harness:
    """A PasswordLogin over a MemoryStore on a fake clock, and a way to try a login."""

    sessions: Sessions
    clock: Clock = field(default_factory=Clock)
    store: EphemeralStore | None = None
    ip_limit_factor: int = 5
    lockout_s: int = LOCKOUT_S

    def __post_init__(self) -> None:
        if self.store is None:
            self.store = MemoryStore(clock=self.clock)
        self.login = PasswordLogin(
            self.store,
            max_failures=MAX_FAILURES,
            failure_window_s=WINDOW_S,
            lockout_s=self.lockout_s,
            ip_limit_factor=self.ip_limit_factor,
            backoff_base_s=0,  # the backoff has its own test; the others stay fast
        )

    async def attempt(
        self, tenant: str, email: str, password: str | None, ip: str | None = "198.51.100.7"
    ) -> User:
        async with self.sessions() as session:
            return await self.login.verify(session, tenant, email, password or "", ip)

    async def outcome(self, tenant: str, email: str, password: str | None) -> str:
        """One of ok, failed or throttled:<retry-after>: comparable across accounts."""
        try:
            await self.attempt(tenant, email, password)
        except LoginThrottled as exc:
            return f"throttled:{exc.retry_after_s}"
        except LoginFailed:
            return "failed"
        return "ok"


@pytest.fixture
def harness(sessions: Sessions) -> Harness:
    return Harness(sessions)


@pytest.fixture
def argon2_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every hash the login verifies a password against, in order."""
    calls: list[str] = []

    def counting(password_hash: str, password: str) -> bool:
        calls.append(password_hash)
        return verify_password(password_hash, password)

    monkeypatch.setattr(login_module, "verify_password", counting)
    return calls


def argon2_parameters(encoded: str) -> str:
    # "$argon2id$v=19$m=65536,t=3,p=4$salt$hash" -> the variant, version and cost parameters
    return "$".join(encoded.split("$")[1:4])


def answer(exc: Unauthenticated) -> tuple[type[Exception], int, str, str, bytes]:
    body = problem(exc.status, exc.type_slug, exc.title, exc.detail).body
    return type(exc), exc.status, exc.type_slug, exc.detail, bytes(body)


async def failure_causes(sessions: Sessions, account: Account) -> dict[str, tuple[str, str, str]]:
    disabled = await make_account(sessions, status="disabled")
    no_password = await make_account(sessions, password=None)
    return {
        "unknown tenant": (f"missing-{uuid.uuid4().hex[:8]}", account.email, PASSWORD),
        "unknown user": (account.tenant, f"nobody-{uuid.uuid4().hex[:6]}@example.org", PASSWORD),
        "wrong password": (account.tenant, account.email, WRONG),
        "disabled user": (disabled.tenant, disabled.email, PASSWORD),
        "user without password": (no_password.tenant, no_password.email, PASSWORD),
    }


# --- the legitimate case -----------------------------------------------------------------


async def test_the_right_password_logs_in(harness: Harness, account: Account) -> None:
    user = await harness.attempt(account.tenant, account.email, account.password)
    assert user.id == account.user_id


async def test_addresses_are_matched_without_case_or_spaces(
    harness: Harness, account: Account
) -> None:
    user = await harness.attempt(
        f" {account.tenant.upper()} ", f"  {account.email.upper()} ", account.password
    )
    assert user.id == account.user_id


async def test_login_without_a_source_address(harness: Harness, account: Account) -> None:
    user = await harness.attempt(account.tenant, account.email, account.password, ip=None)
    assert user.id == account.user_id


# --- no enumeration ----------------------------------------------------------------------


async def test_every_failure_gives_the_same_answer(
    harness: Harness, sessions: Sessions, account: Account
) -> None:
    answers = {}
    for cause, (tenant, email, password) in (await failure_causes(sessions, account)).items():
        with pytest.raises(LoginFailed) as caught:
            await harness.attempt(tenant, email, password)
        answers[cause] = answer(caught.value)

    assert len(set(answers.values())) == 1, answers
    kind, status, slug, _, _ = answers["unknown user"]
    assert (kind, status, slug) == (LoginFailed, 401, "login-failed")
    assert issubclass(kind, Unauthenticated)


async def test_every_failure_costs_one_argon2_verification_with_real_parameters(
    harness: Harness, sessions: Sessions, account: Account, argon2_calls: list[str]
) -> None:
    real = (await harness.attempt(account.tenant, account.email, account.password)).password_hash
    assert real is not None
    argon2_calls.clear()

    for cause, (tenant, email, password) in (await failure_causes(sessions, account)).items():
        before = len(argon2_calls)
        with pytest.raises(LoginFailed):
            await harness.attempt(tenant, email, password)
        assert len(argon2_calls) == before + 1, cause
        # The dummy hash costs what a real one costs: same variant, memory, passes, lanes.
        assert argon2_parameters(argon2_calls[-1]) == argon2_parameters(real), cause
    assert argon2_calls.count(dummy_hash()) == 3  # unknown tenant, unknown user, no password


async def test_unknown_user_takes_as_long_as_a_wrong_password(
    harness: Harness, account: Account
) -> None:
    # Not a ratio (the machine is shared and noisy): both must include a full Argon2 verify.
    floor = min(_timed(lambda: verify_password(dummy_hash(), WRONG)) for _ in range(3))
    unknown_email = f"nobody-{uuid.uuid4().hex[:6]}@example.org"
    for tenant, email in [(account.tenant, unknown_email), (account.tenant, account.email)]:
        started = time.perf_counter()
        with pytest.raises(LoginFailed):
            await harness.attempt(tenant, email, WRONG)
        assert time.perf_counter() - started >= 0.5 * floor


def _timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


# --- lockout -----------------------------------------------------------------------------


async def test_known_account_is_locked_after_max_failures(
    harness: Harness, account: Account, argon2_calls: list[str]
) -> None:
    for _ in range(MAX_FAILURES):
        with pytest.raises(LoginFailed):
            await harness.attempt(account.tenant, account.email, WRONG)

    verified = len(argon2_calls)
    with pytest.raises(LoginThrottled) as caught:
        await harness.attempt(account.tenant, account.email, account.password)
    # Refused before the password is looked at: a right guess during lockout is not confirmed.
    assert len(argon2_calls) == verified
    assert caught.value.status == 429
    assert caught.value.type_slug == "login-throttled"
    assert isinstance(caught.value, TooManyAttempts)
    assert LOCKOUT_S - 1 <= caught.value.retry_after_s <= LOCKOUT_S


async def test_lockout_ends_after_lockout_s(harness: Harness, account: Account) -> None:
    for _ in range(MAX_FAILURES):
        with pytest.raises(LoginFailed):
            await harness.attempt(account.tenant, account.email, WRONG)

    harness.clock.advance(LOCKOUT_S / 2)
    with pytest.raises(LoginThrottled) as caught:
        await harness.attempt(account.tenant, account.email, account.password)
    assert caught.value.retry_after_s == LOCKOUT_S / 2

    harness.clock.advance(LOCKOUT_S / 2 + 1)
    user = await harness.attempt(account.tenant, account.email, account.password)
    assert user.id == account.user_id


async def test_a_fresh_window_follows_the_lockout(harness: Harness, account: Account) -> None:
    for _ in range(MAX_FAILURES):
        with pytest.raises(LoginFailed):
            await harness.attempt(account.tenant, account.email, WRONG)
    harness.clock.advance(LOCKOUT_S + 1)
    # One wrong password after the lockout does not lock again at once.
    with pytest.raises(LoginFailed):
        await harness.attempt(account.tenant, account.email, WRONG)
    assert (await harness.attempt(account.tenant, account.email, account.password)).id


@pytest.mark.parametrize("missing", ["user", "tenant"])
async def test_unknown_account_locks_exactly_like_a_known_one(
    sessions: Sessions, account: Account, missing: str
) -> None:
    known, unknown = Harness(sessions), Harness(sessions)
    tenant = account.tenant if missing == "user" else f"missing-{uuid.uuid4().hex[:8]}"
    email = f"nobody-{uuid.uuid4().hex[:6]}@example.org" if missing == "user" else account.email

    seen_known, seen_unknown = [], []
    for _ in range(MAX_FAILURES):
        seen_known.append(await known.outcome(account.tenant, account.email, WRONG))
        seen_unknown.append(await unknown.outcome(tenant, email, WRONG))
    # The attacker's next try: for the real account even the right password is refused.
    seen_known.append(await known.outcome(account.tenant, account.email, PASSWORD))
    seen_unknown.append(await unknown.outcome(tenant, email, PASSWORD))

    assert seen_known == seen_unknown == ["failed"] * MAX_FAILURES + [f"throttled:{LOCKOUT_S}"]


async def test_lockout_is_per_account(
    harness: Harness, sessions: Sessions, account: Account
) -> None:
    neighbour = await make_account(sessions, tenant=account.tenant)
    for _ in range(MAX_FAILURES):
        with pytest.raises(LoginFailed):
            await harness.attempt(account.tenant, account.email, WRONG)
    with pytest.raises(LoginThrottled):
        await harness.attempt(account.tenant, account.email, account.password)
    assert (await harness.attempt(neighbour.tenant, neighbour.email, PASSWORD)).id


async def test_lockout_holds_from_every_address(harness: Harness, account: Account) -> None:
    for n in range(MAX_FAILURES):
        with pytest.raises(LoginFailed):
            await harness.attempt(account.tenant, account.email, WRONG, ip=f"192.0.2.{n}")
    with pytest.raises(LoginThrottled):
        await harness.attempt(account.tenant, account.email, account.password, ip="192.0.2.99")


async def test_success_clears_the_account_counter(harness: Harness, account: Account) -> None:
    for _ in range(2):
        for _ in range(MAX_FAILURES - 1):
            with pytest.raises(LoginFailed):
                await harness.attempt(account.tenant, account.email, WRONG)
        # Without the reset the second round would reach the limit and lock.
        assert (await harness.attempt(account.tenant, account.email, account.password)).id


async def test_failures_are_forgotten_after_the_window(harness: Harness, account: Account) -> None:
    for _ in range(MAX_FAILURES - 1):
        with pytest.raises(LoginFailed):
            await harness.attempt(account.tenant, account.email, WRONG)
    harness.clock.advance(WINDOW_S + 1)
    for _ in range(MAX_FAILURES - 1):
        with pytest.raises(LoginFailed):
            await harness.attempt(account.tenant, account.email, WRONG)
    assert (await harness.attempt(account.tenant, account.email, account.password)).id


# --- per source address ------------------------------------------------------------------


async def test_one_address_is_limited_across_accounts(sessions: Sessions, account: Account) -> None:
    harness = Harness(sessions, ip_limit_factor=2)
    attacker, other = "203.0.113.50", "203.0.113.51"
    # Spraying: one guess per account, never enough to lock any account.
    for _ in range(MAX_FAILURES * 2):
        email = f"nobody-{uuid.uuid4().hex[:6]}@example.org"
        with pytest.raises(LoginFailed):
            await harness.attempt(account.tenant, email, WRONG, ip=attacker)

    with pytest.raises(LoginThrottled) as caught:
        await harness.attempt(account.tenant, account.email, account.password, ip=attacker)
    assert caught.value.retry_after_s == LOCKOUT_S
    # The account itself is not locked: its owner elsewhere gets in.
    assert (await harness.attempt(account.tenant, account.email, PASSWORD, ip=other)).id


async def test_address_limit_is_higher_than_the_account_limit(
    sessions: Sessions, account: Account
) -> None:
    harness = Harness(sessions, ip_limit_factor=2)
    ip = "203.0.113.60"
    for _ in range(MAX_FAILURES * 2 - 1):
        email = f"nobody-{uuid.uuid4().hex[:6]}@example.org"
        with pytest.raises(LoginFailed):
            await harness.attempt(account.tenant, email, WRONG, ip=ip)
    assert (await harness.attempt(account.tenant, account.email, PASSWORD, ip=ip)).id


async def test_an_ipv6_client_cannot_rotate_within_its_64(
    sessions: Sessions, account: Account
) -> None:
    harness = Harness(sessions, ip_limit_factor=1)
    for n in range(MAX_FAILURES):
        email = f"nobody-{uuid.uuid4().hex[:6]}@example.org"
        with pytest.raises(LoginFailed):
            await harness.attempt(account.tenant, email, WRONG, ip=f"2001:db8:1:2::{n + 1:x}")
    with pytest.raises(LoginThrottled):
        await harness.attempt(account.tenant, account.email, PASSWORD, ip="2001:db8:1:2::ffff")
    assert (await harness.attempt(account.tenant, account.email, PASSWORD, ip="2001:db8:1:3::1")).id


# --- backoff -----------------------------------------------------------------------------


async def test_backoff_grows_with_failures_and_is_bounded(
    sessions: Sessions, account: Account
) -> None:
    async def delays_for(tenant: str, email: str, password: str) -> list[float]:
        delays: list[float] = []

        async def record(seconds: float) -> None:
            delays.append(seconds)

        login = PasswordLogin(
            MemoryStore(),
            max_failures=6,
            failure_window_s=WINDOW_S,
            lockout_s=LOCKOUT_S,
            backoff_base_s=0.1,
            backoff_max_s=0.3,
            sleep=record,
        )
        for _ in range(5):
            async with sessions() as session:
                with pytest.raises(LoginFailed):
                    await login.verify(session, tenant, email, WRONG, "198.51.100.1")
        # The next attempt waits too, whatever its password.
        async with sessions() as session:
            with contextlib.suppress(LoginFailed):
                await login.verify(session, tenant, email, password, "198.51.100.1")
        return delays

    known = await delays_for(account.tenant, account.email, PASSWORD)
    assert known == [0.1, 0.2, 0.3, 0.3, 0.3]
    # An unknown account is slowed down the same way.
    unknown_email = f"nobody-{uuid.uuid4().hex[:6]}@example.org"
    assert await delays_for(account.tenant, unknown_email, PASSWORD) == known


# --- shared state in Redis ---------------------------------------------------------------


@pytest.fixture
async def redis_prefix() -> AsyncIterator[tuple[Redis, str]]:
    require_service("Redis on 127.0.0.1:6379", port_open("127.0.0.1", 6379))
    client = Redis.from_url(REDIS_URL)
    prefix = f"test-login-{uuid.uuid4().hex[:8]}:"
    try:
        yield client, prefix
    finally:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@pytest.mark.redis
async def test_lockout_is_shared_through_redis(
    sessions: Sessions, account: Account, redis_prefix: tuple[Redis, str]
) -> None:
    client, prefix = redis_prefix
    # Two server processes: each its own RedisStore, the same Redis. Redis keeps real time,
    # so the lockout is short.
    first = Harness(sessions, store=RedisStore(client, prefix), lockout_s=1)
    second = Harness(sessions, store=RedisStore(client, prefix), lockout_s=1)

    for _ in range(MAX_FAILURES):
        with pytest.raises(LoginFailed):
            await first.attempt(account.tenant, account.email, WRONG)
    with pytest.raises(LoginThrottled) as caught:
        await second.attempt(account.tenant, account.email, account.password)
    assert caught.value.retry_after_s == 1

    keys = [key.decode() async for key in client.scan_iter(match=f"{prefix}*")]
    assert keys
    # Counters are keyed by digests: the store does not list who tried to log in, or from where.
    assert not any(account.email in key or "198.51.100" in key for key in keys)

    await asyncio.sleep(1.2)
    assert (await second.attempt(account.tenant, account.email, account.password)).id
