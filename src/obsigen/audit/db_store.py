"""The primary audit store: a hash-chained, append-only table in the tenant database.

Appending locks the tenant's row in ``audit_chain_heads`` (``SELECT ... FOR UPDATE`` on
MariaDB; on SQLite every transaction already holds the database write lock, see
db/engine.py), so writers in any number of processes extend one gap-free chain. Within a
process, events that arrive while a write is in flight are appended together in the next
transaction (group commit), which keeps the cost per event low under load.

On a SQLite file, a batch that needs no checkpoint is written by a synchronous twin of the
engine in one trip to a thread of its own (the same statements and the same lock, without a
trip per statement); batches that sign a checkpoint, and MariaDB, take the async engine.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Engine, Table, bindparam, func, insert, select, update
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from obsigen.audit.canonical import canonical_text
from obsigen.audit.chain import GENESIS_HASH, ChainEntry, Checkpoint, make_entry, sign_checkpoint
from obsigen.audit.events import AuditEvent
from obsigen.audit.signing import Signer, make_signer, signing_provider, software_signer
from obsigen.config import Settings
from obsigen.db.base import utcnow
from obsigen.db.engine import make_engine, make_sessionmaker, sync_twin
from obsigen.db.models import AuditChainHead, AuditCheckpoint, AuditEventRecord
from obsigen.keys.interfaces import KeyProvider

# Bounds one transaction (and the time the head row stays locked) under a burst.
MAX_BATCH = 500
READ_PAGE = 1000

_EVENTS = cast(Table, AuditEventRecord.__table__)
_HEADS = cast(Table, AuditChainHead.__table__)
_CHECKPOINTS = cast(Table, AuditCheckpoint.__table__)

# Built once: these run for every batch, and building a statement costs more than running it.
_HEAD_FOR_UPDATE = (
    select(AuditChainHead.seq, AuditChainHead.hash, AuditChainHead.checkpoint_at)
    .where(AuditChainHead.tenant_id == bindparam("tenant_id"))
    .with_for_update()
)
_INSERT_EVENTS = insert(_EVENTS)
_ADVANCE_HEAD = (
    update(_HEADS)
    .where(_HEADS.c.tenant_id == bindparam("b_tenant_id"))
    .values(seq=bindparam("b_seq"), hash=bindparam("b_hash"), updated_at=bindparam("b_now"))
)

# The synchronous twin (appends on a thread of their own) is off until its teardown race is
# understood: a fixture's shutdown was seen waiting forever for it (see the issue #11 note).
TWIN_ENABLED = False


@dataclass(frozen=True, slots=True)
class CheckpointPolicy:
    every: int = 100
    seconds: float = 60.0


class DatabaseAuditSink:
    name = "database"

    def __init__(
        self,
        engine: AsyncEngine,
        signer: Callable[[], Signer | Awaitable[Signer]],
        policy: CheckpointPolicy | None = None,
        *,
        owns_engine: bool = False,
        clock: Callable[[], datetime] = utcnow,
        key_provider: KeyProvider | None = None,
    ) -> None:
        self._key_provider = key_provider  # closed with the sink
        self._engine = engine
        self._sessions = make_sessionmaker(engine)
        self._signer_factory = signer
        self._signer: Signer | None = None
        self._policy = policy or CheckpointPolicy()
        self._owns_engine = owns_engine
        self._clock = clock
        self._pending: dict[str, list[tuple[AuditEvent, asyncio.Future[None]]]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._heads: set[str] = set()
        # The synchronous twin (SQLite files only) and its one thread, made on first use.
        self._twin: Engine | None = None
        self._twin_checked = False
        self._thread: ThreadPoolExecutor | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> DatabaseAuditSink:
        # Its own engine: audit writes neither wait for nor starve the request pool.
        provider = signing_provider(settings)
        factory: Callable[[], Signer | Awaitable[Signer]]
        if provider is None:
            factory = lambda: software_signer(settings.paths.data_dir)  # noqa: E731
        else:
            factory = lambda: make_signer(settings, provider)  # noqa: E731
        return cls(
            make_engine(settings.database_url, settings.storage.database_password),
            factory,
            CheckpointPolicy(settings.audit.checkpoint_every, settings.audit.checkpoint_seconds),
            owns_engine=True,
            key_provider=provider,
        )

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        return self._sessions

    async def signer(self) -> Signer:
        # Created on first use: a process that never checkpoints never touches the key. A
        # factory that is a coroutine (an HSM or KMS key) is asked every time, so a rotation
        # is followed without a restart; a plain one (a file key) is asked once.
        if self._signer is not None:
            return self._signer
        made = self._signer_factory()
        if inspect.isawaitable(made):
            return await made
        self._signer = made
        return made

    async def emit(self, event: AuditEvent) -> None:
        await self.emit_many((event,))

    async def emit_many(self, events: Sequence[AuditEvent]) -> None:
        """Append ``events`` in this order; those of one tenant share one transaction (up to
        MAX_BATCH, with whatever other emitters queued meanwhile). Returns once all committed."""
        # Refuse an event without a canonical form (NaN, say) here, alone: inside a batch it
        # would fail the other emitters' events with it.
        for event in events:
            canonical_text(event.to_json())
        loop = asyncio.get_running_loop()
        waiting: dict[str, list[asyncio.Future[None]]] = {}
        for event in events:
            done: asyncio.Future[None] = loop.create_future()
            # An emitter cancelled while queued never awaits its future: mark errors as seen.
            done.add_done_callback(_consume_exception)
            self._pending.setdefault(event.tenant_id, []).append((event, done))
            waiting.setdefault(event.tenant_id, []).append(done)
        for tenant_id, futures in waiting.items():
            lock = self._locks.setdefault(tenant_id, asyncio.Lock())
            async with lock:
                # Whoever holds the lock writes everything queued so far, its own events
                # included unless an earlier holder already did.
                while not all(future.done() for future in futures):
                    await self._flush(tenant_id)
            for future in futures:
                await future

    async def _flush(self, tenant_id: str) -> None:
        queue = self._pending[tenant_id]
        batch = queue[:MAX_BATCH]
        del queue[:MAX_BATCH]
        events = [event for event, _ in batch]
        try:
            written = await self._append_in_thread(tenant_id, events)
        except _WrittenThenCancelled:
            # Cancelled while the thread committed: the batch is stored, do not write it again.
            _settle(batch, None)
            raise asyncio.CancelledError from None
        except Exception as exc:  # noqa: BLE001 - not swallowed: each emitter's future raises it
            _settle(batch, exc)
            return
        except BaseException:
            # Cancelled before anything was written: the next holder writes them.
            queue[:0] = batch
            raise
        if written:
            _settle(batch, None)
            return
        try:
            await self._append(tenant_id, events)
        except Exception as exc:  # noqa: BLE001 - not swallowed: each emitter's future raises it
            _settle(batch, exc)
            return
        except BaseException:
            # Cancelled mid-write: the transaction rolled back; the next holder retries them.
            queue[:0] = batch
            raise
        _settle(batch, None)

    def _twin_engine(self) -> Engine | None:
        if not TWIN_ENABLED:
            return None
        if not self._twin_checked:
            self._twin_checked = True
            self._twin = sync_twin(self._engine)
            if self._twin is not None:
                self._thread = ThreadPoolExecutor(1, thread_name_prefix="obsigen-audit-db")
        return self._twin

    async def _append_in_thread(self, tenant_id: str, events: list[AuditEvent]) -> bool:
        """The batch through the synchronous twin; False when it takes the async path
        (no twin, or a checkpoint to sign: signers are async) and nothing was written."""
        twin = self._twin_engine()
        if twin is None or self._thread is None:
            return False
        records = [event.to_json() for event in events]
        await self._ensure_head(tenant_id)
        loop = asyncio.get_running_loop()
        work = loop.run_in_executor(
            self._thread, self._append_sync, twin, tenant_id, events, records
        )
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            pass
        # A thread cannot be stopped: wait for its transaction to end (a few ms; at most the
        # busy timeout), so the batch is neither lost nor written twice, then stop.
        try:
            written = await _outcome_when_done(work)
        except Exception:  # noqa: BLE001 - it rolled back: nothing was written, the batch is retried
            written = False
        if written:
            raise _WrittenThenCancelled
        raise asyncio.CancelledError

    def _append_sync(
        self, twin: Engine, tenant_id: str, events: list[AuditEvent], records: list[dict[str, Any]]
    ) -> bool:
        with twin.connect() as conn, conn.begin() as transaction:
            head = conn.execute(_HEAD_FOR_UPDATE, {"tenant_id": tenant_id}).one()
            now = self._clock()
            every = self._policy.every
            last = head.seq + len(events)
            if last // every > head.seq // every or self._checkpoint_due(head.checkpoint_at, now):
                transaction.rollback()
                return False
            seq, prev_hash = head.seq, head.hash
            rows: list[dict[str, Any]] = []
            for event, record in zip(events, records, strict=True):
                seq += 1
                entry = make_entry(record, seq, prev_hash)
                rows.append(_row(tenant_id, event, entry))
                prev_hash = entry.hash
            conn.execute(_INSERT_EVENTS, rows)
            conn.execute(
                _ADVANCE_HEAD,
                {"b_tenant_id": tenant_id, "b_seq": seq, "b_hash": prev_hash, "b_now": now},
            )
        return True

    async def _append(self, tenant_id: str, events: list[AuditEvent]) -> None:
        records = [event.to_json() for event in events]
        await self._ensure_head(tenant_id)
        # Core, not the ORM: this runs for every event and the ORM would double its cost.
        async with self._engine.begin() as conn:
            head = (await conn.execute(_HEAD_FOR_UPDATE, {"tenant_id": tenant_id})).one()
            seq, prev_hash = head.seq, head.hash
            rows: list[dict[str, Any]] = []
            to_sign: list[tuple[int, str]] = []
            for event, record in zip(events, records, strict=True):
                seq += 1
                entry = make_entry(record, seq, prev_hash)
                rows.append(_row(tenant_id, event, entry))
                prev_hash = entry.hash
                if seq % self._policy.every == 0:
                    to_sign.append((seq, entry.hash))
            now = self._clock()
            if (not to_sign or to_sign[-1][0] != seq) and self._checkpoint_due(
                head.checkpoint_at, now
            ):
                to_sign.append((seq, prev_hash))
            await conn.execute(_INSERT_EVENTS, rows)
            if to_sign:
                await _store_checkpoints(conn, await self.signer(), tenant_id, to_sign, now)
            values: dict[str, Any] = {"seq": seq, "hash": prev_hash, "updated_at": now}
            if to_sign:
                values.update(checkpoint_seq=to_sign[-1][0], checkpoint_at=now)
            await conn.execute(
                update(_HEADS).where(AuditChainHead.tenant_id == tenant_id).values(values)
            )

    def _checkpoint_due(self, last: datetime | None, now: datetime) -> bool:
        return last is None or (now - last).total_seconds() >= self._policy.seconds

    async def _ensure_head(self, tenant_id: str) -> None:
        if tenant_id in self._heads:
            return
        values = {
            "tenant_id": tenant_id,
            "seq": 0,
            "hash": GENESIS_HASH,
            "anchor_seq": 0,
            "anchor_hash": GENESIS_HASH,
            "checkpoint_seq": 0,
            "checkpoint_at": None,
            "updated_at": utcnow(),
        }
        # Insert-if-absent: another process may create the same head at the same moment.
        if self._engine.dialect.name == "mysql":
            statement: Any = mysql_insert(AuditChainHead).values(values)
            statement = statement.on_duplicate_key_update(tenant_id=statement.inserted.tenant_id)
        else:
            statement = sqlite_insert(AuditChainHead).values(values).on_conflict_do_nothing()
        async with self._engine.begin() as conn:
            await conn.execute(statement)
        self._heads.add(tenant_id)

    async def checkpoint_now(self, tenant_id: str) -> Checkpoint | None:
        """Sign the current head unless it is already signed (before an export, say)."""
        async with self._engine.begin() as conn:
            head = (
                await conn.execute(
                    select(AuditChainHead.seq, AuditChainHead.hash, AuditChainHead.checkpoint_seq)
                    .where(AuditChainHead.tenant_id == tenant_id)
                    .with_for_update()
                )
            ).one_or_none()
            if head is None or head.seq == 0 or head.checkpoint_seq == head.seq:
                return None
            now = self._clock()
            (checkpoint,) = await _store_checkpoints(
                conn, await self.signer(), tenant_id, [(head.seq, head.hash)], now
            )
            await conn.execute(
                update(_HEADS)
                .where(AuditChainHead.tenant_id == tenant_id)
                .values(checkpoint_seq=head.seq, checkpoint_at=now)
            )
            return checkpoint

    async def aclose(self) -> None:
        # Events left queued by cancelled emitters are still written: nothing is dropped.
        for tenant_id, queue in self._pending.items():
            while queue:
                async with self._locks[tenant_id]:
                    if queue:
                        await self._flush(tenant_id)
        if self._thread is not None:
            self._thread.shutdown(wait=True)
        if self._twin is not None:
            self._twin.dispose()
        if self._owns_engine:
            await self._engine.dispose()
        if self._key_provider is not None:
            await self._key_provider.aclose()


class _WrittenThenCancelled(BaseException):
    """The thread committed the batch, but its emitter was cancelled meanwhile."""


def _settle(batch: list[tuple[AuditEvent, asyncio.Future[None]]], error: Exception | None) -> None:
    for _, future in batch:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


async def _outcome_when_done(work: asyncio.Future[bool]) -> bool:
    """``work``'s result, waiting through any further cancellation of the caller."""
    while True:
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            if work.done():
                return work.result()


def _consume_exception(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


def _row(tenant_id: str, event: AuditEvent, entry: ChainEntry) -> dict[str, Any]:
    return {
        "tenant_id": tenant_id,
        "seq": entry.seq,
        "event_id": entry.event_id,
        "time": event.time,
        "event_type": event.type,
        "outcome": event.outcome,
        "interaction_id": event.interaction_id,
        "record": entry.record,
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
    }


async def _store_checkpoints(
    conn: AsyncConnection,
    signer: Signer,
    tenant_id: str,
    links: list[tuple[int, str]],
    now: datetime,
) -> list[Checkpoint]:
    jwk = json.dumps(await signer.public_jwk(), sort_keys=True)
    checkpoints = [
        await sign_checkpoint(signer, tenant_id, seq, hash_, now) for seq, hash_ in links
    ]
    await conn.execute(
        insert(_CHECKPOINTS),
        [
            {
                "tenant_id": tenant_id,
                "seq": c.seq,
                "hash": c.hash,
                "signed_at": now,
                "key_id": c.key_id,
                "algorithm": c.algorithm,
                "signature": c.signature,
                "public_jwk": jwk,
            }
            for c in checkpoints
        ],
    )
    return checkpoints


# --- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HeadState:
    seq: int
    hash: str
    anchor_seq: int
    anchor_hash: str


async def read_head(sessions: async_sessionmaker[AsyncSession], tenant_id: str) -> HeadState | None:
    async with sessions.begin() as session:
        head = await session.get(AuditChainHead, tenant_id)
        if head is None:
            return None
        return HeadState(head.seq, head.hash, head.anchor_seq, head.anchor_hash)


async def max_stored_seq(sessions: async_sessionmaker[AsyncSession], tenant_id: str) -> int | None:
    async with sessions.begin() as session:
        value = await session.scalar(
            select(func.max(AuditEventRecord.seq)).where(AuditEventRecord.tenant_id == tenant_id)
        )
        return None if value is None else int(value)


async def read_checkpoints(
    sessions: async_sessionmaker[AsyncSession],
    tenant_id: str,
    first_seq: int = 0,
    last_seq: int | None = None,
) -> list[tuple[Checkpoint, dict[str, str]]]:
    """Checkpoints in a range, each with the public key stored beside it."""
    query = (
        select(AuditCheckpoint)
        .where(AuditCheckpoint.tenant_id == tenant_id, AuditCheckpoint.seq >= first_seq)
        .order_by(AuditCheckpoint.seq)
    )
    if last_seq is not None:
        query = query.where(AuditCheckpoint.seq <= last_seq)
    async with sessions.begin() as session:
        rows = (await session.execute(query)).scalars().all()
    return [
        (
            Checkpoint(
                tenant_id=row.tenant_id,
                seq=row.seq,
                hash=row.hash,
                signed_at=row.signed_at.isoformat(timespec="microseconds"),
                key_id=row.key_id,
                algorithm=row.algorithm,
                signature=row.signature,
            ),
            json.loads(row.public_jwk),
        )
        for row in rows
    ]


async def iter_entries(
    sessions: async_sessionmaker[AsyncSession],
    tenant_id: str,
    after_seq: int = 0,
    last_seq: int | None = None,
) -> AsyncIterator[ChainEntry]:
    """Entries in seq order, a page per short transaction so writers are not held up."""
    while True:
        query = (
            select(
                AuditEventRecord.seq,
                AuditEventRecord.event_id,
                AuditEventRecord.prev_hash,
                AuditEventRecord.hash,
                AuditEventRecord.record,
            )
            .where(AuditEventRecord.tenant_id == tenant_id, AuditEventRecord.seq > after_seq)
            .order_by(AuditEventRecord.seq)
            .limit(READ_PAGE)
        )
        if last_seq is not None:
            query = query.where(AuditEventRecord.seq <= last_seq)
        async with sessions.begin() as session:
            rows = (await session.execute(query)).all()
        for row in rows:
            yield ChainEntry(row.seq, row.event_id, row.prev_hash, row.hash, row.record)
        if len(rows) < READ_PAGE:
            return
        after_seq = rows[-1].seq


async def seq_range(
    sessions: async_sessionmaker[AsyncSession],
    tenant_id: str,
    since: datetime | None,
    until: datetime | None,
) -> tuple[int, int] | None:
    """The first and last seq of the events in [since, until); None when there are none."""
    conditions: list[Any] = [AuditEventRecord.tenant_id == tenant_id]
    if since is not None:
        conditions.append(AuditEventRecord.time >= since)
    if until is not None:
        conditions.append(AuditEventRecord.time < until)
    async with sessions.begin() as session:
        row = (
            await session.execute(
                select(func.min(AuditEventRecord.seq), func.max(AuditEventRecord.seq)).where(
                    *conditions
                )
            )
        ).one()
    if row[0] is None:
        return None
    return int(row[0]), int(row[1])


async def chain_tenants(sessions: async_sessionmaker[AsyncSession]) -> list[str]:
    """Every tenant with an audit chain, including ones whose head row went missing."""
    async with sessions.begin() as session:
        heads = (await session.execute(select(AuditChainHead.tenant_id))).scalars().all()
        stored = (
            (await session.execute(select(AuditEventRecord.tenant_id).distinct())).scalars().all()
        )
    return sorted(set(heads) | set(stored))
