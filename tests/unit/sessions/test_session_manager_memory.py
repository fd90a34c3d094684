"""Manager logic on the in-process store with a fake clock: token format, input checks,
deadlines at their edges, and the store's own housekeeping."""

from __future__ import annotations

import logging
import re

import pytest
from redis.asyncio import Redis

from obsigen.errors import Unauthenticated
from obsigen.sessions.manager import RefreshRejected, SessionEnded, SessionManager
from obsigen.sessions.memory_store import MemorySessionStore
from obsigen.sessions.redis_store import RedisSessionStore
from obsigen.sessions.store import RotateOutcome, Rotation, make_session_store


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store() -> MemorySessionStore:
    return MemorySessionStore()


def _manager(
    store: MemorySessionStore,
    clock: FakeClock,
    *,
    refresh_ttl_s: int = 600,
    idle_timeout_s: int = 300,
    session_max_s: int = 3600,
) -> SessionManager:
    return SessionManager(
        store,
        refresh_ttl_s=refresh_ttl_s,
        idle_timeout_s=idle_timeout_s,
        session_max_s=session_max_s,
        clock=clock,
    )


@pytest.fixture
def manager(store: MemorySessionStore, clock: FakeClock) -> SessionManager:
    return _manager(store, clock)


async def test_refresh_token_format(manager: SessionManager) -> None:
    record, token = await manager.start(tenant_id="t", user_id="u", amr=["pwd"])

    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", record.session_id)
    assert re.fullmatch(rf"ort_{record.session_id}\.[A-Za-z0-9_-]{{43}}", token)


async def test_ids_and_secrets_are_fresh(manager: SessionManager) -> None:
    started = [await manager.start(tenant_id="t", user_id="u", amr=["pwd"]) for _ in range(20)]

    assert len({r.session_id for r, _ in started}) == 20
    assert len({t.rsplit(".", 1)[1] for _, t in started}) == 20


async def test_the_store_keeps_no_token_in_clear(
    manager: SessionManager, store: MemorySessionStore
) -> None:
    _, token = await manager.start(tenant_id="t", user_id="u", amr=["pwd"])
    _, rotated = await manager.refresh(token)

    held = repr(store._sessions)
    for secret in (token.rsplit(".", 1)[1], rotated.rsplit(".", 1)[1]):
        assert secret not in held


@pytest.mark.parametrize(
    "token",
    [
        "",
        "ort_",
        "garbage",
        "ort_" + "A" * 22 + "." + "B" * 42,
        "ort_" + "A" * 22 + "." + "B" * 44,
        "ort_" + "A" * 21 + "." + "B" * 44,
        "ort_" + "A" * 22 + "." + "B" * 42 + "=",
        "ort_" + "A" * 22 + ":" + "B" * 43,
        "xrt_" + "A" * 22 + "." + "B" * 43,
        "ort_" + "A" * 22 + "." + "B" * 43 + "\n",
        "ort_" + "A" * 10_000,
    ],
)
async def test_malformed_tokens_are_rejected(manager: SessionManager, token: str) -> None:
    with pytest.raises(RefreshRejected):
        await manager.refresh(token)


async def test_every_rejection_reads_the_same(manager: SessionManager, clock: FakeClock) -> None:
    record, first = await manager.start(tenant_id="t", user_id="u", amr=["pwd"])
    _, idle_token = await manager.start(tenant_id="t", user_id="u", amr=["pwd"])
    await manager.refresh(first)
    forged = f"ort_{record.session_id}.{'x' * 43}"
    details = set()
    for token in ("malformed", forged, first, first):  # malformed, unknown, reused, revoked
        with pytest.raises(RefreshRejected) as caught:
            await manager.refresh(token)
        details.add((caught.value.detail, caught.value.status, caught.value.type_slug))
    clock.now += 300
    with pytest.raises(RefreshRejected) as caught:
        await manager.refresh(idle_token)  # expired
    details.add((caught.value.detail, caught.value.status, caught.value.type_slug))

    assert details == {("Invalid or expired refresh token", 401, "invalid-refresh-token")}
    assert issubclass(RefreshRejected, Unauthenticated)


async def test_reuse_is_logged_without_the_token(
    manager: SessionManager, caplog: pytest.LogCaptureFixture
) -> None:
    record, first = await manager.start(tenant_id="t", user_id="u", amr=["pwd"])
    await manager.refresh(first)

    with (
        caplog.at_level(logging.WARNING, logger="obsigen.sessions.manager"),
        pytest.raises(RefreshRejected),
    ):
        await manager.refresh(first)

    assert record.session_id in caplog.text
    assert first.rsplit(".", 1)[1] not in caplog.text


async def test_idle_deadline_never_passes_the_absolute_end(
    store: MemorySessionStore, clock: FakeClock
) -> None:
    manager = _manager(store, clock, idle_timeout_s=60, session_max_s=100)
    record, _ = await manager.start(tenant_id="t", user_id="u", amr=["pwd"])

    clock.now += 50
    assert await manager.touch(record.session_id) is not None
    clock.now = record.expires_at - 0.001
    assert await manager.touch(record.session_id) is not None
    clock.now = record.expires_at
    assert await manager.touch(record.session_id) is None


async def test_refresh_deadline_never_passes_the_absolute_end(
    store: MemorySessionStore, clock: FakeClock
) -> None:
    manager = _manager(store, clock, refresh_ttl_s=600, idle_timeout_s=600, session_max_s=100)
    record, token = await manager.start(tenant_id="t", user_id="u", amr=["pwd"])

    clock.now = record.expires_at
    with pytest.raises(RefreshRejected):
        await manager.refresh(token)


async def test_a_short_refresh_lifetime_is_enforced(
    store: MemorySessionStore, clock: FakeClock
) -> None:
    manager = _manager(store, clock, refresh_ttl_s=60, idle_timeout_s=300)
    record, token = await manager.start(tenant_id="t", user_id="u", amr=["pwd"])

    clock.now += 59.999
    _, token = await manager.refresh(token)
    clock.now += 60
    with pytest.raises(RefreshRejected):
        await manager.refresh(token)
    assert await manager.touch(record.session_id) is not None


async def test_store_outcomes_tell_what_the_caller_is_not_told(
    store: MemorySessionStore, clock: FakeClock
) -> None:
    manager = _manager(store, clock)
    record, _ = await manager.start(tenant_id="t", user_id="u", amr=["pwd"])
    now_ms = int(clock.now * 1000)

    async def rotate(session_id: str, presented: str) -> Rotation:
        return await store.rotate(
            session_id,
            presented_hash=presented,
            new_hash="n",
            now_ms=now_ms,
            idle_timeout_ms=300_000,
            refresh_ttl_ms=600_000,
        )

    assert (await rotate("B" * 22, "h")).outcome is RotateOutcome.UNKNOWN
    assert (await rotate(record.session_id, "h")).outcome is RotateOutcome.UNKNOWN
    now_ms += 300_000
    assert (await rotate(record.session_id, "h")).outcome is RotateOutcome.EXPIRED


async def test_dead_sessions_are_swept_from_memory(
    store: MemorySessionStore, clock: FakeClock
) -> None:
    manager = _manager(store, clock)
    for n in range(300):
        await manager.start(tenant_id="t", user_id=f"u{n}", amr=["pwd"])
    clock.now += 300
    for n in range(256):
        await manager.start(tenant_id="t2", user_id=f"u{n}", amr=["pwd"])

    assert len(store._sessions) <= 256
    assert all(owner[0] == "t2" for owner in store._by_user)


async def test_session_id_lookups_check_the_shape_first(manager: SessionManager) -> None:
    for bad in ("", "short", "A" * 23, "../" + "A" * 19, "A" * 21 + "*"):
        assert await manager.touch(bad) is None
        assert await manager.end(bad) is False
        with pytest.raises(SessionEnded):
            await manager.add_factors(bad, ["otp"])


async def test_session_ended_is_an_unauthenticated_error() -> None:
    assert issubclass(SessionEnded, Unauthenticated)
    assert SessionEnded().status == 401


@pytest.mark.parametrize("amr", [[""], ["has space"], ["x" * 33], ["ok", "bad\n"]])
async def test_invalid_methods_are_refused(manager: SessionManager, amr: list[str]) -> None:
    with pytest.raises(ValueError, match="authentication method"):
        await manager.start(tenant_id="t", user_id="u", amr=amr)
    record, _ = await manager.start(tenant_id="t", user_id="u", amr=["pwd"])
    with pytest.raises(ValueError, match="authentication method"):
        await manager.add_factors(record.session_id, amr)


@pytest.mark.parametrize(("tenant", "user"), [("", "u"), ("t", "")])
async def test_a_session_needs_an_owner(manager: SessionManager, tenant: str, user: str) -> None:
    with pytest.raises(ValueError, match="tenant_id and a user_id"):
        await manager.start(tenant_id=tenant, user_id=user, amr=["pwd"])
    with pytest.raises(ValueError, match="tenant_id and a user_id"):
        await manager.end_all(tenant, user)


@pytest.mark.parametrize("field", ["refresh_ttl_s", "idle_timeout_s", "session_max_s"])
@pytest.mark.parametrize("value", [0, -1, True])
def test_lifetimes_must_be_positive(store: MemorySessionStore, field: str, value: int) -> None:
    lifetimes = {"refresh_ttl_s": 600, "idle_timeout_s": 300, "session_max_s": 3600}
    lifetimes[field] = value
    with pytest.raises(ValueError, match=field):
        SessionManager(store, **lifetimes)


def test_the_factory_picks_memory_without_redis() -> None:
    assert isinstance(make_session_store(None), MemorySessionStore)


def test_the_factory_picks_redis_with_a_client() -> None:
    # Building the store registers scripts only; nothing connects.
    client = Redis(host="127.0.0.1", port=1)
    assert isinstance(make_session_store(client), RedisSessionStore)
