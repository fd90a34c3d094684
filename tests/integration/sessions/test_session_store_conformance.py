"""One behaviour, two stores: every test runs on the in-process store and on Redis (loopback).

A fake clock drives both. The stores check every deadline against the clock they are given,
so idle timeouts and absolute lifetimes are tested here without sleeping; Redis's own key
expiry is exercised in test_session_redis_only.py.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis

from obsigen.sessions.manager import RefreshRejected, SessionEnded, SessionManager
from obsigen.sessions.memory_store import MemorySessionStore
from obsigen.sessions.records import SessionRecord
from obsigen.sessions.redis_store import RedisSessionStore
from obsigen.sessions.store import SPENT_HASHES_KEPT, SessionStore

REFRESH_TTL_S = 600
IDLE_S = 300
MAX_S = 3600


class FakeClock:
    """Starts at the real time, so the TTLs Redis derives from it are realistic durations."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


# Synchronous, because an async fixture cannot ask for the (async) Redis fixtures on demand.
@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def store(request: pytest.FixtureRequest) -> SessionStore:
    if request.param == "redis":
        client: Redis = request.getfixturevalue("redis_client")
        return RedisSessionStore(client, prefix=request.getfixturevalue("redis_prefix"))
    return MemorySessionStore()


@pytest.fixture
def manager(store: SessionStore, clock: FakeClock) -> SessionManager:
    return SessionManager(
        store,
        refresh_ttl_s=REFRESH_TTL_S,
        idle_timeout_s=IDLE_S,
        session_max_s=MAX_S,
        clock=clock,
    )


async def _start(
    manager: SessionManager, tenant: str = "t1", user: str = "u1"
) -> tuple[SessionRecord, str]:
    return await manager.start(tenant_id=tenant, user_id=user, amr=["pwd"])


# --- start and touch -------------------------------------------------------------------------


async def test_start_returns_the_record_and_touch_finds_it(
    manager: SessionManager, clock: FakeClock
) -> None:
    record, token = await manager.start(tenant_id="t1", user_id="u1", amr=["pwd", "pwd"])

    assert record.tenant_id == "t1"
    assert record.user_id == "u1"
    assert record.amr == ("pwd",)
    assert record.auth_time == record.created_at == int(clock.now)
    assert record.expires_at == record.created_at + MAX_S
    assert token.startswith(f"ort_{record.session_id}.")
    assert await manager.touch(record.session_id) == record
    assert await manager.sessions_of("t1", "u1") == [record]


async def test_touch_of_an_unknown_session_is_none(manager: SessionManager) -> None:
    assert await manager.touch("A" * 22) is None


async def test_idle_timeout_ends_a_session_and_touch_restarts_it(
    manager: SessionManager, clock: FakeClock
) -> None:
    kept, _ = await _start(manager)
    idle, _ = await _start(manager)

    clock.advance(IDLE_S - 1)
    assert await manager.touch(kept.session_id) == kept
    clock.advance(IDLE_S - 1)  # 2 * IDLE_S - 2 after start: alive only thanks to the touch
    assert await manager.touch(kept.session_id) == kept
    assert await manager.touch(idle.session_id) is None
    clock.advance(IDLE_S)
    assert await manager.touch(kept.session_id) is None


async def test_idle_deadline_is_exact(manager: SessionManager, clock: FakeClock) -> None:
    record, _ = await _start(manager)

    clock.advance(IDLE_S - 0.001)
    assert await manager.touch(record.session_id) is not None
    clock.advance(IDLE_S)
    assert await manager.touch(record.session_id) is None


async def test_absolute_lifetime_ends_an_active_session(
    manager: SessionManager, clock: FakeClock
) -> None:
    record, _ = await _start(manager)

    while clock.now + IDLE_S / 2 < record.expires_at:
        clock.advance(IDLE_S / 2)
        assert await manager.touch(record.session_id) == record
    clock.now = record.expires_at - 0.001
    assert await manager.touch(record.session_id) == record
    clock.now = record.expires_at
    assert await manager.touch(record.session_id) is None
    assert await manager.sessions_of("t1", "u1") == []


# --- rotation and reuse ----------------------------------------------------------------------


async def test_refresh_rotates_the_token(manager: SessionManager) -> None:
    record, first = await _start(manager)

    again, second = await manager.refresh(first)
    _, third = await manager.refresh(second)

    assert again == record
    assert len({first, second, third}) == 3
    assert second.startswith(f"ort_{record.session_id}.")
    assert await manager.touch(record.session_id) == record


async def test_reused_token_revokes_the_family_including_the_new_token(
    manager: SessionManager,
) -> None:
    record, first = await _start(manager)
    _, second = await manager.refresh(first)

    with pytest.raises(RefreshRejected):
        await manager.refresh(first)  # the copy an attacker kept
    with pytest.raises(RefreshRejected):
        await manager.refresh(second)  # the owner's token died with the session
    assert await manager.touch(record.session_id) is None
    assert await manager.sessions_of("t1", "u1") == []


async def test_reuse_of_an_older_spent_token_also_revokes(manager: SessionManager) -> None:
    record, first = await _start(manager)
    token = first
    for _ in range(5):
        _, token = await manager.refresh(token)

    with pytest.raises(RefreshRejected):
        await manager.refresh(first)
    assert await manager.touch(record.session_id) is None


async def test_spent_hashes_are_bounded(manager: SessionManager) -> None:
    record, first = await _start(manager)
    spent = [first]
    token = first
    for _ in range(SPENT_HASHES_KEPT + 1):
        _, token = await manager.refresh(token)
        spent.append(token)

    # The oldest fell out of the window: refused, but no longer recognised as this session's.
    with pytest.raises(RefreshRejected):
        await manager.refresh(spent[0])
    assert await manager.touch(record.session_id) is not None
    # One inside the window still ends the session.
    with pytest.raises(RefreshRejected):
        await manager.refresh(spent[2])
    assert await manager.touch(record.session_id) is None


async def test_a_guessed_secret_is_refused_without_ending_the_session(
    manager: SessionManager,
) -> None:
    # The session id is no secret (access tokens carry it): a forged token must not be a way
    # to log someone out.
    record, token = await _start(manager)
    forged = f"ort_{record.session_id}.{'x' * 43}"

    with pytest.raises(RefreshRejected):
        await manager.refresh(forged)
    assert await manager.touch(record.session_id) == record
    await manager.refresh(token)


async def test_concurrent_refreshes_with_one_token_let_exactly_one_win(
    manager: SessionManager,
) -> None:
    record, token = await _start(manager)

    results = await asyncio.gather(
        *(manager.refresh(token) for _ in range(10)), return_exceptions=True
    )

    won = [r for r in results if isinstance(r, tuple)]
    lost = [r for r in results if isinstance(r, BaseException)]
    assert len(won) == 1
    assert len(lost) == 9
    assert all(isinstance(e, RefreshRejected) for e in lost)
    # The losers presented a spent token: reuse, so the winner's new token is dead too.
    with pytest.raises(RefreshRejected):
        await manager.refresh(won[0][1])
    assert await manager.touch(record.session_id) is None


async def test_refresh_counts_as_activity(manager: SessionManager, clock: FakeClock) -> None:
    record, token = await _start(manager)

    clock.advance(IDLE_S - 1)
    _, token = await manager.refresh(token)
    clock.advance(IDLE_S - 1)
    assert await manager.touch(record.session_id) == record


async def test_an_expired_refresh_token_is_refused_but_the_session_lives_on(
    manager: SessionManager, clock: FakeClock
) -> None:
    record, token = await _start(manager)
    for _ in range(3):  # activity keeps the session alive past the refresh token's lifetime
        clock.advance(REFRESH_TTL_S / 3)
        assert await manager.touch(record.session_id) is not None

    with pytest.raises(RefreshRejected):
        await manager.refresh(token)
    assert await manager.touch(record.session_id) == record


async def test_refresh_after_the_idle_timeout_is_refused(
    manager: SessionManager, clock: FakeClock
) -> None:
    record, token = await _start(manager)

    clock.advance(IDLE_S)
    with pytest.raises(RefreshRejected):
        await manager.refresh(token)
    assert await manager.touch(record.session_id) is None


async def test_refresh_never_extends_past_the_absolute_end(
    manager: SessionManager, clock: FakeClock
) -> None:
    record, token = await _start(manager)
    while clock.now + IDLE_S / 2 < record.expires_at:
        clock.advance(IDLE_S / 2)
        _, token = await manager.refresh(token)

    clock.now = record.expires_at
    with pytest.raises(RefreshRejected):
        await manager.refresh(token)
    assert await manager.touch(record.session_id) is None


async def test_a_token_of_one_session_is_useless_for_another(manager: SessionManager) -> None:
    one, token = await _start(manager)
    other, _ = await _start(manager)
    swapped = f"ort_{other.session_id}.{token.rsplit('.', 1)[1]}"

    with pytest.raises(RefreshRejected):
        await manager.refresh(swapped)
    assert await manager.touch(one.session_id) == one
    assert await manager.touch(other.session_id) == other


# --- logout and revocation -------------------------------------------------------------------


async def test_logout_ends_the_session_and_its_refresh_token(manager: SessionManager) -> None:
    record, token = await _start(manager)
    other, _ = await _start(manager)

    assert await manager.end(record.session_id) is True
    assert await manager.touch(record.session_id) is None
    with pytest.raises(RefreshRejected):
        await manager.refresh(token)
    assert await manager.end(record.session_id) is False
    assert await manager.sessions_of("t1", "u1") == [other]


async def test_logout_of_an_idled_out_session_reports_false(
    manager: SessionManager, clock: FakeClock
) -> None:
    record, _ = await _start(manager)
    clock.advance(IDLE_S)
    assert await manager.end(record.session_id) is False


async def test_end_all_ends_only_that_users_sessions(manager: SessionManager) -> None:
    mine = [await _start(manager, "t1", "u1") for _ in range(3)]
    other_user, _ = await _start(manager, "t1", "u2")
    other_tenant, _ = await _start(manager, "t2", "u1")  # same user id, another tenant

    assert await manager.end_all("t1", "u1") == 3

    for record, token in mine:
        assert await manager.touch(record.session_id) is None
        with pytest.raises(RefreshRejected):
            await manager.refresh(token)
    assert await manager.touch(other_user.session_id) == other_user
    assert await manager.touch(other_tenant.session_id) == other_tenant
    assert await manager.sessions_of("t1", "u1") == []
    assert await manager.sessions_of("t1", "u2") == [other_user]
    assert await manager.sessions_of("t2", "u1") == [other_tenant]
    assert await manager.end_all("t1", "u1") == 0


async def test_end_all_counts_only_live_sessions(manager: SessionManager, clock: FakeClock) -> None:
    await _start(manager)
    clock.advance(IDLE_S - 1)
    live, _ = await _start(manager)
    clock.advance(1)  # the first one idles out

    assert await manager.end_all("t1", "u1") == 1
    assert await manager.touch(live.session_id) is None


async def test_ids_containing_the_key_separator_do_not_collide(manager: SessionManager) -> None:
    a, _ = await _start(manager, "a:b", "c")
    b, _ = await _start(manager, "a", "b:c")
    c, _ = await _start(manager, "tënant", "ü")

    assert await manager.end_all("a:b", "c") == 1
    assert await manager.touch(a.session_id) is None
    assert await manager.sessions_of("a", "b:c") == [b]
    assert await manager.sessions_of("tënant", "ü") == [c]


async def test_sessions_of_lists_live_sessions_oldest_first(
    manager: SessionManager, clock: FakeClock
) -> None:
    stale, _ = await _start(manager)
    clock.advance(10)
    first, _ = await _start(manager)
    clock.advance(10)
    second, _ = await _start(manager)
    clock.advance(IDLE_S - 15)  # only `stale` is past its idle deadline

    assert await manager.sessions_of("t1", "u1") == [first, second]
    assert await manager.touch(stale.session_id) is None


# --- step-up ---------------------------------------------------------------------------------


async def test_add_factors_unions_amr_and_updates_auth_time(
    manager: SessionManager, clock: FakeClock
) -> None:
    record, _ = await _start(manager)
    clock.advance(42)

    stepped = await manager.add_factors(record.session_id, ["otp", "pwd", "otp"])

    assert stepped.amr == ("pwd", "otp")
    assert stepped.auth_time == record.auth_time + 42
    assert stepped.created_at == record.created_at
    assert stepped.expires_at == record.expires_at
    assert await manager.touch(record.session_id) == stepped
    assert await manager.sessions_of("t1", "u1") == [stepped]
    again = await manager.add_factors(record.session_id, ["hwk"])
    assert again.amr == ("pwd", "otp", "hwk")


async def test_add_factors_survives_rotation(manager: SessionManager) -> None:
    record, token = await _start(manager)
    await manager.add_factors(record.session_id, ["otp"])

    refreshed, _ = await manager.refresh(token)

    assert refreshed.amr == ("pwd", "otp")


async def test_add_factors_counts_as_activity(manager: SessionManager, clock: FakeClock) -> None:
    record, _ = await _start(manager)
    clock.advance(IDLE_S - 1)
    await manager.add_factors(record.session_id, ["otp"])
    clock.advance(IDLE_S - 1)
    assert await manager.touch(record.session_id) is not None


async def test_add_factors_on_an_ended_session_raises(
    manager: SessionManager, clock: FakeClock
) -> None:
    ended, _ = await _start(manager)
    idled, _ = await _start(manager)
    await manager.end(ended.session_id)
    clock.advance(IDLE_S)

    with pytest.raises(SessionEnded):
        await manager.add_factors(ended.session_id, ["otp"])
    with pytest.raises(SessionEnded):
        await manager.add_factors(idled.session_id, ["otp"])
