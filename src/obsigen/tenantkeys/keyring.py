"""Per-tenant data keys: created on first use, wrapped by the KEK, unwrapped into a short cache.

A DEK exists in plaintext only in this process's memory, for at most ``ttl_s`` seconds after it
was unwrapped (and never after the tenant's erasure in this process). The database holds only
the wrapped form, bound by the wrap context to the tenant and the key version, so a wrapped key
copied onto another tenant's row does not unwrap.

Lookups take the caller's session when there is one: SQLite grants one writer at a time, so a
second session opened inside a write transaction would wait on the first until it timed out.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from obsigen.db.base import utcnow
from obsigen.db.tenant_keys_models import TenantDataKey
from obsigen.keys.errors import KeyProviderError
from obsigen.keys.interfaces import KeyProvider, KeyState
from obsigen.tenantkeys.errors import TenantKeysDestroyed

ACTIVE, RETIRED, DESTROYED = "active", "retired", "destroyed"
_CREATE_ATTEMPTS = 5


def wrap_context(tenant_id: str, version: int) -> dict[str, str]:
    return {"purpose": "tenant-dek", "tenant_id": tenant_id, "version": str(version)}


@dataclass(frozen=True, slots=True)
class TenantKeys:
    """A tenant's usable DEKs by version, and the one new data is sealed with."""

    active_version: int | None
    keys: dict[int, bytes]

    def active(self) -> tuple[int, bytes]:
        if self.active_version is None:
            raise TenantKeysDestroyed("the tenant has no active data key")
        return self.active_version, self.keys[self.active_version]


@dataclass(frozen=True, slots=True)
class RewrapReport:
    kek_id: str
    rewrapped: int
    unchanged: int
    failed: list[str]


class TenantKeyring:
    def __init__(
        self,
        provider: KeyProvider,
        sessions: async_sessionmaker[AsyncSession],
        *,
        ttl_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.provider = provider
        self._sessions = sessions
        self._ttl_s = ttl_s
        self._clock = clock
        self._cache: dict[str, tuple[TenantKeys, float]] = {}
        # One creator per tenant in this process: concurrent first writers wait for it instead
        # of each taking a second pooled connection while holding their own (that exhausts
        # the pool and every one of them waits out its timeout).
        self._creating: dict[str, asyncio.Lock] = {}
        self._kek: tuple[str, float] | None = None

    # --- reading ---------------------------------------------------------------------------

    async def keys_of(self, tenant_id: str, session: AsyncSession | None = None) -> TenantKeys:
        """Every usable DEK of the tenant (none at all for a tenant that never sealed data)."""
        cached = self._cached(tenant_id)
        if cached is not None:
            return cached
        if session is not None:
            return await self._load(session, tenant_id)
        async with self._sessions() as own:
            return await self._load(own, tenant_id)

    async def active_key(
        self, tenant_id: str, session: AsyncSession | None = None
    ) -> tuple[int, bytes]:
        """The DEK to seal with, created (with the first KEK, if need be) on first use."""
        cached = self._cached(tenant_id)
        if cached is not None and cached.active_version is not None:
            return cached.active()
        if session is not None:
            found = await self._active_in(session, tenant_id)
        else:
            async with self._sessions.begin() as own:
                found = await self._active_in(own, tenant_id)
        # Created apart only after our own session is closed when we opened it: holding it
        # while asking the pool for another is how a busy pool deadlocks.
        return found if found is not None else await self._create_apart(tenant_id)

    def forget(self, tenant_id: str | None = None) -> None:
        """Drop cached plaintext keys: one tenant's, or all."""
        if tenant_id is None:
            self._cache.clear()
        else:
            self._cache.pop(tenant_id, None)

    def _cached(self, tenant_id: str) -> TenantKeys | None:
        entry = self._cache.get(tenant_id)
        if entry is None:
            return None
        if self._clock() >= entry[1]:
            self._cache.pop(tenant_id, None)
            return None
        return entry[0]

    async def _load(
        self, session: AsyncSession, tenant_id: str, *, locking: bool = False
    ) -> TenantKeys:
        query = select(TenantDataKey).where(TenantDataKey.tenant_id == tenant_id)
        if locking:
            # A locking read sees rows committed after this transaction's snapshot (InnoDB).
            query = query.with_for_update()
        rows = (await session.scalars(query.order_by(TenantDataKey.version))).all()
        keys: dict[int, bytes] = {}
        active: int | None = None
        for row in rows:
            if row.state == DESTROYED or row.wrapped is None:
                continue
            keys[row.version] = await self.provider.unwrap(
                row.kek_id, row.wrapped, wrap_context(tenant_id, row.version)
            )
            if row.state == ACTIVE:
                active = row.version
        found = TenantKeys(active, keys)
        if rows and not keys and any(row.state == DESTROYED for row in rows):
            # Not cached: an erased tenant is refused on every call, from the database's word.
            raise TenantKeysDestroyed("the tenant's data keys were destroyed (tenant erased)")
        self._cache[tenant_id] = (found, self._clock() + self._ttl_s)
        return found

    async def _active_in(self, session: AsyncSession, tenant_id: str) -> tuple[int, bytes] | None:
        """The active key, created in ``session`` on SQLite; None: create it apart (MariaDB)."""
        found = await self._load(session, tenant_id)
        if found.active_version is not None:
            return found.active()
        if session.get_bind().dialect.name == "sqlite":
            # The caller holds SQLite's only write lock: nobody can race us, and a second
            # session would wait on this one. Create inside the caller's transaction.
            async with session.begin_nested():
                await self._create(session, tenant_id)
            return (await self._load(session, tenant_id)).active()
        return None

    async def _create_apart(self, tenant_id: str) -> tuple[int, bytes]:
        """The first key in a short transaction of its own: concurrent first writers of one
        tenant then collide on a two-statement transaction (and retry), not on their turns."""
        async with self._creating.setdefault(tenant_id, asyncio.Lock()):
            cached = self._cached(tenant_id)
            if cached is not None and cached.active_version is not None:
                return cached.active()
            return await self._create_apart_once(tenant_id)

    async def _create_apart_once(self, tenant_id: str) -> tuple[int, bytes]:
        for attempt in range(_CREATE_ATTEMPTS):
            try:
                async with self._sessions.begin() as own:
                    # A locking read sees keys committed by others since any snapshot.
                    found = await self._load(own, tenant_id, locking=True)
                    if found.active_version is None:
                        await self._create(own, tenant_id)
                        found = await self._load(own, tenant_id)
                return found.active()
            except (IntegrityError, OperationalError):
                # Duplicate version or an InnoDB deadlock with a concurrent creator.
                if attempt == _CREATE_ATTEMPTS - 1:
                    raise
                self.forget(tenant_id)
        raise AssertionError("unreachable")

    async def _create(self, session: AsyncSession, tenant_id: str) -> None:
        last = await session.scalar(
            select(func.max(TenantDataKey.version)).where(TenantDataKey.tenant_id == tenant_id)
        )
        version = int(last or 0) + 1
        kek_id = await self.active_kek()
        made = await self.provider.new_data_key(kek_id, wrap_context(tenant_id, version))
        session.add(
            TenantDataKey(
                tenant_id=tenant_id,
                version=version,
                kek_id=kek_id,
                wrapped=made.wrapped,
                state=ACTIVE,
            )
        )
        await session.flush()

    async def active_kek(self) -> str:
        """The newest active KEK of the provider; the first one is created when there is none."""
        if self._kek is not None and self._clock() < self._kek[1]:
            return self._kek[0]
        active = [
            info
            for info in await self.provider.list_keys()
            if info.use == "enc" and info.state is KeyState.ACTIVE
        ]
        kid = active[-1].kid if active else (await self.provider.create_kek()).kid
        self._kek = (kid, self._clock() + self._ttl_s)
        return kid

    # --- lifecycle -------------------------------------------------------------------------

    async def rotate_dek(self, tenant_id: str) -> int:
        """A new DEK version seals new data; older versions stay for reading (retired)."""
        async with self._sessions.begin() as session:
            await self._load(session, tenant_id)  # refuses an erased tenant
            await session.execute(
                update(TenantDataKey)
                .where(TenantDataKey.tenant_id == tenant_id, TenantDataKey.state == ACTIVE)
                .values(state=RETIRED)
            )
            await self._create(session, tenant_id)
        self.forget(tenant_id)
        return (await self.active_key(tenant_id))[0]

    async def rewrap_all(self) -> RewrapReport:
        """Wrap every live DEK under the newest active KEK; data is not touched.

        Run after ``obsigen keys rotate --kind kek``: the old KEK only unwraps from then on,
        and once nothing is wrapped under it, it can be retired."""
        self._kek = None
        kek_id = await self.active_kek()
        rewrapped = unchanged = 0
        failed: list[str] = []
        async with self._sessions.begin() as session:
            rows = (
                await session.scalars(
                    select(TenantDataKey).where(TenantDataKey.wrapped.is_not(None))
                )
            ).all()
            for row in rows:
                if row.kek_id == kek_id or row.wrapped is None:
                    unchanged += 1
                    continue
                context = wrap_context(row.tenant_id, row.version)
                try:
                    dek = await self.provider.unwrap(row.kek_id, row.wrapped, context)
                except KeyProviderError as exc:
                    # One key wrapped under a KEK this provider lacks must not block the rest.
                    failed.append(f"{row.tenant_id} v{row.version}: {exc.detail}")
                    continue
                row.wrapped = await self.provider.wrap(kek_id, dek, context)
                row.kek_id = kek_id
                rewrapped += 1
        self.forget()
        return RewrapReport(kek_id, rewrapped, unchanged, failed)

    async def destroy(self, session: AsyncSession, tenant_id: str) -> int:
        """Crypto-shred the tenant: every wrapped DEK is erased from its row. Returns how many
        keys were live. Runs in the caller's transaction, so erasure commits as one."""
        live = (
            await session.scalars(
                select(TenantDataKey).where(
                    TenantDataKey.tenant_id == tenant_id, TenantDataKey.wrapped.is_not(None)
                )
            )
        ).all()
        now = utcnow()
        for row in live:
            # Overwritten before it is cleared, so a page kept by the engine holds zeros.
            row.wrapped = bytes(len(row.wrapped or b""))
        await session.flush()
        await session.execute(
            update(TenantDataKey)
            .where(TenantDataKey.tenant_id == tenant_id)
            .values(wrapped=None, state=DESTROYED, destroyed_at=now)
        )
        self.forget(tenant_id)
        return len(live)
