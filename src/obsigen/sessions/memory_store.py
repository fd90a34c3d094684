"""In-process sessions for the embedded default (one server process) and unit tests.

The same semantics as the Redis backend: every deadline is checked against the caller's
``now_ms``, and dead entries are dropped when met and by an amortised sweep.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import OrderedDict
from dataclasses import dataclass, field

from obsigen.sessions.records import SessionRecord, merge_amr
from obsigen.sessions.store import SPENT_HASHES_KEPT, RotateOutcome, Rotation

_SWEEP_EVERY = 256


@dataclass(slots=True)
class _Entry:
    record: SessionRecord
    idle_deadline_ms: int
    refresh_hash: str
    refresh_deadline_ms: int
    # Insertion order is spending order, so the oldest is evicted first.
    spent: OrderedDict[str, None] = field(default_factory=OrderedDict)

    def live(self, now_ms: int) -> bool:
        return now_ms < self.idle_deadline_ms and now_ms < self.record.expires_at * 1000

    def extend(self, now_ms: int, idle_timeout_ms: int) -> None:
        self.idle_deadline_ms = min(now_ms + idle_timeout_ms, self.record.expires_at * 1000)


class MemorySessionStore:
    name = "memory"

    def __init__(self) -> None:
        self._sessions: dict[str, _Entry] = {}
        self._by_user: dict[tuple[str, str], set[str]] = {}
        self._creates = 0
        # No step awaits today, so each is atomic on the event loop anyway; the lock keeps
        # that true if one ever does (rotation must stay one step).
        self._lock = asyncio.Lock()

    def _drop(self, session_id: str) -> None:
        entry = self._sessions.pop(session_id, None)
        if entry is None:
            return
        owner = (entry.record.tenant_id, entry.record.user_id)
        ids = self._by_user.get(owner)
        if ids is not None:
            ids.discard(session_id)
            if not ids:
                del self._by_user[owner]

    def _live(self, session_id: str, now_ms: int) -> _Entry | None:
        entry = self._sessions.get(session_id)
        if entry is None:
            return None
        if not entry.live(now_ms):
            self._drop(session_id)
            return None
        return entry

    def _sweep(self, now_ms: int) -> None:
        # Sessions nobody touches again would otherwise stay forever (Redis has key TTLs).
        self._creates += 1
        if self._creates % _SWEEP_EVERY:
            return
        for session_id in [s for s, e in self._sessions.items() if not e.live(now_ms)]:
            self._drop(session_id)

    async def create(
        self,
        record: SessionRecord,
        *,
        refresh_hash: str,
        now_ms: int,
        idle_deadline_ms: int,
        refresh_deadline_ms: int,
    ) -> bool:
        async with self._lock:
            self._sweep(now_ms)
            if self._live(record.session_id, now_ms) is not None:
                return False
            self._sessions[record.session_id] = _Entry(
                record, idle_deadline_ms, refresh_hash, refresh_deadline_ms
            )
            self._by_user.setdefault((record.tenant_id, record.user_id), set()).add(
                record.session_id
            )
            return True

    async def touch(
        self, session_id: str, *, now_ms: int, idle_timeout_ms: int
    ) -> SessionRecord | None:
        async with self._lock:
            entry = self._live(session_id, now_ms)
            if entry is None:
                return None
            entry.extend(now_ms, idle_timeout_ms)
            return entry.record

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
        async with self._lock:
            present = session_id in self._sessions
            entry = self._live(session_id, now_ms)
            if entry is None:
                return Rotation(RotateOutcome.EXPIRED if present else RotateOutcome.UNKNOWN)
            if presented_hash == entry.refresh_hash:
                if now_ms >= entry.refresh_deadline_ms:
                    return Rotation(RotateOutcome.EXPIRED)
                entry.spent[presented_hash] = None
                while len(entry.spent) > SPENT_HASHES_KEPT:
                    entry.spent.popitem(last=False)
                entry.refresh_hash = new_hash
                entry.refresh_deadline_ms = min(
                    now_ms + refresh_ttl_ms, entry.record.expires_at * 1000
                )
                entry.extend(now_ms, idle_timeout_ms)
                return Rotation(RotateOutcome.ROTATED, entry.record)
            if presented_hash in entry.spent:
                self._drop(session_id)
                return Rotation(RotateOutcome.REUSED)
            return Rotation(RotateOutcome.UNKNOWN)

    async def add_factors(
        self,
        session_id: str,
        methods: tuple[str, ...],
        *,
        auth_time: int,
        now_ms: int,
        idle_timeout_ms: int,
    ) -> SessionRecord | None:
        async with self._lock:
            entry = self._live(session_id, now_ms)
            if entry is None:
                return None
            entry.record = dataclasses.replace(
                entry.record, amr=merge_amr(entry.record.amr, methods), auth_time=auth_time
            )
            entry.extend(now_ms, idle_timeout_ms)
            return entry.record

    async def end(self, session_id: str, *, now_ms: int) -> bool:
        async with self._lock:
            was_live = self._live(session_id, now_ms) is not None
            self._drop(session_id)
            return was_live

    async def end_all(self, tenant_id: str, user_id: str, *, now_ms: int) -> int:
        async with self._lock:
            ids = list(self._by_user.get((tenant_id, user_id), ()))
            live = sum(self._live(session_id, now_ms) is not None for session_id in ids)
            for session_id in ids:
                self._drop(session_id)
            return live

    async def sessions_of(
        self, tenant_id: str, user_id: str, *, now_ms: int
    ) -> list[SessionRecord]:
        async with self._lock:
            ids = list(self._by_user.get((tenant_id, user_id), ()))
            entries = [e for e in (self._live(s, now_ms) for s in ids) if e is not None]
            return sorted((e.record for e in entries), key=lambda r: (r.created_at, r.session_id))

    async def aclose(self) -> None:
        async with self._lock:
            self._sessions.clear()
            self._by_user.clear()
