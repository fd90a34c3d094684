"""Async engine and session factory for SQLite (embedded) and MariaDB/MySQL (asyncmy)."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from obsigen.db.sqlite_driver import defer_begin, one_trip_dbapi
from obsigen.errors import DatabaseUnavailable
from obsigen.secrets.connect import inject_database_password

# asyncmy waits for an answer forever by default: a database host that froze (or a network
# that drops packets silently) would hold every request that touches it. Either can be set in
# the URL instead (``?connect_timeout=5&read_timeout=120``). The read timeout bounds each wait
# for bytes, so it must exceed the longest a statement may legitimately wait, which is
# InnoDB's lock wait (innodb_lock_wait_timeout, 50 s by default).
MYSQL_TIMEOUTS_S = {"connect_timeout": 10, "read_timeout": 60}

log = logging.getLogger(__name__)

# The one-trip SQLite adapter (db/sqlite_driver.py) is off by default until it has passed the
# whole suite in CI: it was still being fixed when this was committed (issue #11 note).
ONE_TRIP_SQLITE = False


def make_engine(url: str, password: str = "") -> AsyncEngine:
    """``password`` is a secret reference (``storage.database_password``), read at each connect."""
    kwargs: dict[str, Any] = {}
    if url.startswith("mysql"):
        given = make_url(url).query
        timeouts = {name: s for name, s in MYSQL_TIMEOUTS_S.items() if name not in given}
        kwargs.update(pool_pre_ping=True, pool_recycle=1800, connect_args=timeouts)
    if url.startswith("sqlite"):
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin (see below).
        kwargs["connect_args"] = {"isolation_level": None, "timeout": 30}
    if url.startswith("sqlite+aiosqlite") and ONE_TRIP_SQLITE:
        # One trip to aiosqlite's thread per statement instead of three or four (see there).
        dbapi = one_trip_dbapi()
        if dbapi is not None:
            kwargs["module"] = dbapi
    engine = create_async_engine(url, **kwargs)
    if url.startswith("sqlite"):
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _sqlite_begin_immediate)
    if password:
        inject_database_password(engine, password)
    event.listen(engine.sync_engine, "handle_error", _outage_as_unavailable)
    return engine


def sync_twin(engine: AsyncEngine) -> Engine | None:
    """A synchronous engine on the same SQLite database file, set up as ``make_engine`` sets
    up its engines (pragmas, BEGIN IMMEDIATE, outages as DatabaseUnavailable), for work that
    runs a whole transaction in one trip to a thread. None for anything but a file database.
    """
    url = engine.url
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return None
    if "mode=memory" in database or url.query.get("mode") == "memory":
        return None
    twin = create_engine(
        url.set(drivername="sqlite"),
        # One thread at a time, but not always the same one.
        connect_args={"isolation_level": None, "timeout": 30, "check_same_thread": False},
    )
    event.listen(twin, "connect", _sqlite_pragmas)
    event.listen(twin, "begin", _sqlite_begin_immediate)
    event.listen(twin, "handle_error", _outage_as_unavailable)
    return twin


def _outage_as_unavailable(context: ExceptionContext) -> BaseException | None:
    """A lost or impossible connection becomes ``DatabaseUnavailable`` (503), which the turn
    and the web edge handle like any other dependency outage instead of as a bug (500).

    Only outages: SQL errors (deadlocks, constraint violations) keep their own types, and a
    failed pre-ping must stay as it is so the pool reconnects transparently.
    """
    original = context.original_exception
    if not isinstance(original, Exception):
        # A cancelled statement (the task cancelled, the client gone) must stay a
        # cancellation: as an Exception it would be caught and the cancel lost.
        return None
    if context.is_pre_ping or not (context.is_disconnect or _connect_failed(context)):
        return None
    # The driver's message names hosts and ports: for the log, not for the caller.
    log.warning("database unavailable: %s: %s", type(original).__name__, str(original)[:300])
    return DatabaseUnavailable("the database is unavailable; retry later")


def _connect_failed(context: ExceptionContext) -> bool:
    """Connecting failed for want of a database to talk to (refused, timed out, handshake
    never answered), not because it refused us: MySQL's client-side codes are 2000-2999; an
    access denied (1045) is a configuration error and keeps its type."""
    if context.connection is not None:
        return False
    args = getattr(context.original_exception, "args", ())
    code = args[0] if args and isinstance(args[0], int) else None
    return code is None or 2000 <= code < 3000


def _sqlite_begin_immediate(conn: Any) -> None:
    # A deferred transaction that reads and then writes cannot wait for a concurrent writer:
    # SQLite fails it at once with "database is locked". Taking the write lock up front makes
    # concurrent turns queue on the busy timeout instead (WAL still lets readers outside
    # transactions proceed).
    if not defer_begin(conn.connection.dbapi_connection, "BEGIN IMMEDIATE"):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    # Foreign keys make tenant deletion cascade; WAL lets readers run beside the writer.
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    # As long as the connect timeout: a writer signing a checkpoint or creating a tenant key
    # holds the lock for a moment, longer on a loaded host; waiting beats failing.
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
