"""Login sessions: start, the per-request liveness check, refresh-token rotation, revocation.

A refresh token is ``ort_<session id>.<secret>`` with a 256-bit secret. The stores keep only
its SHA-256 (the secret is random, so no salt or slow hash is needed), plus the hashes of
spent ones, so that a copy presented after its rotation is recognised as reuse and ends the
whole session: the thief's token and the owner's new one die together.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import time
from collections.abc import Callable, Sequence

from obsigen.errors import Unauthenticated
from obsigen.sessions.records import SessionRecord, is_session_id, normalise_amr
from obsigen.sessions.store import RotateOutcome, SessionStore

log = logging.getLogger(__name__)

# Names the token type in logs and leak scanners; not a secret.
REFRESH_PREFIX = "ort_"
_TOKEN_RE = re.compile(r"ort_([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{43})")
_TOKEN_LEN = len(REFRESH_PREFIX) + 22 + 1 + 43


class RefreshRejected(Unauthenticated):
    """Unknown, malformed, expired or reused: the caller learns nothing about which."""

    type_slug = "invalid-refresh-token"
    title = "Invalid or expired refresh token"


class SessionEnded(Unauthenticated):
    """The session was logged out, revoked, idled out or reached its absolute end."""

    type_slug = "session-ended"
    title = "Session ended"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _new_refresh_token(session_id: str) -> str:
    return f"{REFRESH_PREFIX}{session_id}.{secrets.token_urlsafe(32)}"


def _session_id_of(token: str) -> str | None:
    # Length first: an oversized header value never reaches the regex or the store.
    if not isinstance(token, str) or len(token) != _TOKEN_LEN:
        return None
    match = _TOKEN_RE.fullmatch(token)
    return None if match is None else match[1]


def _positive(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive number of seconds")
    return value


def _owner(tenant_id: str, user_id: str) -> None:
    if not tenant_id or not user_id:
        raise ValueError("a session needs a tenant_id and a user_id")


class SessionManager:
    def __init__(
        self,
        store: SessionStore,
        *,
        refresh_ttl_s: int,
        idle_timeout_s: int,
        session_max_s: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._refresh_ttl_ms = _positive("refresh_ttl_s", refresh_ttl_s) * 1000
        self._idle_ms = _positive("idle_timeout_s", idle_timeout_s) * 1000
        self._session_max_s = _positive("session_max_s", session_max_s)
        self._clock = clock

    @property
    def store(self) -> SessionStore:
        return self._store

    def _now(self) -> tuple[float, int]:
        now = self._clock()
        return now, int(now * 1000)

    async def start(
        self, *, tenant_id: str, user_id: str, amr: Sequence[str]
    ) -> tuple[SessionRecord, str]:
        """New session; returns it and its first refresh token."""
        _owner(tenant_id, user_id)
        methods = normalise_amr(amr)
        now, now_ms = self._now()
        created_at = int(now)
        expires_at = created_at + self._session_max_s
        for _ in range(3):
            session_id = secrets.token_urlsafe(16)
            record = SessionRecord(
                session_id=session_id,
                tenant_id=tenant_id,
                user_id=user_id,
                amr=methods,
                auth_time=created_at,
                created_at=created_at,
                expires_at=expires_at,
            )
            token = _new_refresh_token(session_id)
            created = await self._store.create(
                record,
                refresh_hash=_hash(token),
                now_ms=now_ms,
                idle_deadline_ms=min(now_ms + self._idle_ms, expires_at * 1000),
                refresh_deadline_ms=min(now_ms + self._refresh_ttl_ms, expires_at * 1000),
            )
            if created:
                return record, token
        # 128 random bits colliding three times means the random source is broken.
        raise RuntimeError("could not allocate a unique session id")

    async def touch(self, session_id: str) -> SessionRecord | None:
        """Called on EVERY authenticated request: the live session (idle timer restarted, never
        past expires_at) or None when it ended, idled out or expired. One round trip to the
        store, O(1) in the number of sessions.

        Raises ``StoreUnavailable`` when Redis cannot be asked (fail closed)."""
        if not is_session_id(session_id):
            return None
        _, now_ms = self._now()
        return await self._store.touch(session_id, now_ms=now_ms, idle_timeout_ms=self._idle_ms)

    async def refresh(self, refresh_token: str) -> tuple[SessionRecord, str]:
        """Rotation: the presented token is spent and a new one returned. A token presented a
        second time ends the whole session and raises RefreshRejected, as do unknown,
        malformed and expired ones. Atomic: of concurrent refreshes with one token exactly one
        wins, and the session is then revoked (reuse). Refresh counts as activity."""
        session_id = _session_id_of(refresh_token)
        if session_id is None:
            raise RefreshRejected()
        new_token = _new_refresh_token(session_id)
        _, now_ms = self._now()
        rotation = await self._store.rotate(
            session_id,
            presented_hash=_hash(refresh_token),
            new_hash=_hash(new_token),
            now_ms=now_ms,
            idle_timeout_ms=self._idle_ms,
            refresh_ttl_ms=self._refresh_ttl_ms,
        )
        if rotation.outcome is RotateOutcome.ROTATED:
            assert rotation.record is not None
            return rotation.record, new_token
        if rotation.outcome is RotateOutcome.REUSED:
            # The session id is no secret (it is in the access token); the token never logged.
            log.warning("refresh token reuse: session %s revoked", session_id)
        raise RefreshRejected()

    async def add_factors(self, session_id: str, methods: Sequence[str]) -> SessionRecord:
        """Step-up: amr becomes the union, auth_time = now. SessionEnded if the session is gone."""
        added = normalise_amr(methods)
        if not is_session_id(session_id):
            raise SessionEnded()
        now, now_ms = self._now()
        record = await self._store.add_factors(
            session_id, added, auth_time=int(now), now_ms=now_ms, idle_timeout_ms=self._idle_ms
        )
        if record is None:
            raise SessionEnded()
        return record

    async def end(self, session_id: str) -> bool:
        """Logout: the session and its refresh tokens end; True if it was live."""
        if not is_session_id(session_id):
            return False
        _, now_ms = self._now()
        return await self._store.end(session_id, now_ms=now_ms)

    async def end_all(self, tenant_id: str, user_id: str) -> int:
        """Revoke every session of one user in one tenant; the number that were live."""
        _owner(tenant_id, user_id)
        _, now_ms = self._now()
        return await self._store.end_all(tenant_id, user_id, now_ms=now_ms)

    async def sessions_of(self, tenant_id: str, user_id: str) -> list[SessionRecord]:
        """The user's live sessions, oldest first."""
        _owner(tenant_id, user_id)
        _, now_ms = self._now()
        return await self._store.sessions_of(tenant_id, user_id, now_ms=now_ms)
