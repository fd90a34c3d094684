"""Async engine and session factory for SQLite (embedded) and MariaDB/MySQL (asyncmy)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from obsigen.secrets.connect import inject_database_password


def make_engine(url: str, password: str = "") -> AsyncEngine:
    """``password`` is a secret reference (``storage.database_password``), read at each connect."""
    kwargs: dict[str, Any] = {}
    if url.startswith("mysql"):
        kwargs.update(pool_pre_ping=True, pool_recycle=1800)
    if url.startswith("sqlite"):
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin (see below).
        kwargs["connect_args"] = {"isolation_level": None, "timeout": 30}
    engine = create_async_engine(url, **kwargs)
    if url.startswith("sqlite"):
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _sqlite_begin_immediate)
    if password:
        inject_database_password(engine, password)
    return engine


def _sqlite_begin_immediate(conn: Any) -> None:
    # A deferred transaction that reads and then writes cannot wait for a concurrent writer:
    # SQLite fails it at once with "database is locked". Taking the write lock up front makes
    # concurrent turns queue on the busy timeout instead (WAL still lets readers outside
    # transactions proceed).
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
