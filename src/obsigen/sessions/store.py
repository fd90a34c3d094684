"""Where sessions live: the atomic steps the manager needs, on Redis or in-process.

Every time is an epoch in milliseconds passed in by the caller (the manager's clock), and every
deadline is checked against it explicitly. Key TTLs on Redis mirror the same deadlines so that
nothing outlives its session, but correctness never depends on them alone; this is also what
lets one fake clock drive both backends through the same tests.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis

from obsigen.sessions.records import SessionRecord

# Hashes of spent refresh tokens kept per session for reuse detection. One rotation per access
# token lifetime (default 15 min) over a 12 h session is 48; an older copy presented after that
# is still refused, only without ending the session.
SPENT_HASHES_KEPT = 64


class RotateOutcome(enum.Enum):
    ROTATED = "rotated"
    UNKNOWN = "unknown"  # no such session, or a secret it never issued
    EXPIRED = "expired"  # the session or this refresh token is past its deadline
    REUSED = "reused"  # a spent token came back: the session has been ended


@dataclass(frozen=True, slots=True)
class Rotation:
    outcome: RotateOutcome
    record: SessionRecord | None = None  # set only when ROTATED


class SessionStore(Protocol):
    name: str

    async def create(
        self,
        record: SessionRecord,
        *,
        refresh_hash: str,
        now_ms: int,
        idle_deadline_ms: int,
        refresh_deadline_ms: int,
    ) -> bool:
        """Store a new session and index it under its user; False if the id is taken."""
        ...

    async def touch(
        self, session_id: str, *, now_ms: int, idle_timeout_ms: int
    ) -> SessionRecord | None:
        """The live session with its idle deadline moved to now + idle (capped at its absolute
        end), or None. One atomic step, O(1): this runs on every request."""
        ...

    async def rotate(
        self,
        session_id: str,
        *,
        presented_hash: str,
        new_hash: str,
        now_ms: int,
        idle_timeout_ms: int,
        refresh_ttl_ms: int,
    ) -> Rotation:
        """If ``presented_hash`` is the current refresh hash and both are in time: spend it,
        make ``new_hash`` current and restart the idle timer. If it is a spent one: end the
        session. One atomic step, so of two callers with the same token only one rotates."""
        ...

    async def add_factors(
        self,
        session_id: str,
        methods: tuple[str, ...],
        *,
        auth_time: int,
        now_ms: int,
        idle_timeout_ms: int,
    ) -> SessionRecord | None:
        """amr becomes the union, auth_time is set, the idle timer restarts; None if gone."""
        ...

    async def end(self, session_id: str, *, now_ms: int) -> bool:
        """Delete the session and its refresh state; True if it was live."""
        ...

    async def end_all(self, tenant_id: str, user_id: str, *, now_ms: int) -> int:
        """End every session of the user; the number that were live."""
        ...

    async def sessions_of(
        self, tenant_id: str, user_id: str, *, now_ms: int
    ) -> list[SessionRecord]:
        """The user's live sessions, oldest first."""
        ...

    async def aclose(self) -> None: ...


def make_session_store(redis: Redis | None) -> SessionStore:
    """Redis when configured (every server process sees every revocation), else in-process."""
    # Imported here because both backends import this module's types.
    if redis is None:
        from obsigen.sessions.memory_store import MemorySessionStore

        return MemorySessionStore()
    from obsigen.sessions.redis_store import RedisSessionStore

    return RedisSessionStore(redis)
