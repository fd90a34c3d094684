"""One retention run at a time, across processes and replicas sharing a database.

MariaDB/MySQL: a named lock (``GET_LOCK``) on a connection held for the run. The server
frees it when that connection ends, so a replica that dies mid-run cannot block the others.
SQLite: an ``flock`` on a file next to the database; only processes on the one host can
share an SQLite file, so that covers every writer, and the kernel frees it on exit.
Within one process a set of held keys answers first (flock is per open file, not per
process, and GET_LOCK is re-entrant per connection only).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

_held: set[str] = set()


def lock_name(engine: AsyncEngine) -> str:
    # GET_LOCK names are server-wide (and at most 64 characters): scope them to the schema so
    # two deployments on one server do not exclude each other.
    database = engine.url.database or ""
    name = f"obsigen.retention.{database}"
    if len(name) > 64:
        name = "obsigen.retention." + hashlib.sha256(database.encode()).hexdigest()[:40]
    return name


@contextlib.asynccontextmanager
async def retention_lock(engine: AsyncEngine) -> AsyncIterator[bool]:
    """Yields True while this caller holds the lock, False when someone else does."""
    key = engine.url.render_as_string(hide_password=True)
    if key in _held:
        yield False
        return
    _held.add(key)
    try:
        if engine.dialect.name in ("mysql", "mariadb"):
            async with _named_lock(engine) as acquired:
                yield acquired
        elif engine.dialect.name == "sqlite":
            with _file_lock(engine) as acquired:
                yield acquired
        else:
            yield True
    finally:
        _held.discard(key)


@contextlib.asynccontextmanager
async def _named_lock(engine: AsyncEngine) -> AsyncIterator[bool]:
    name = lock_name(engine)
    async with engine.connect() as conn:
        got = await conn.scalar(text("SELECT GET_LOCK(:name, 0)"), {"name": name})
        if got != 1:
            yield False
            return
        try:
            yield True
        finally:
            await conn.scalar(text("SELECT RELEASE_LOCK(:name)"), {"name": name})


@contextlib.contextmanager
def _file_lock(engine: AsyncEngine) -> Iterator[bool]:
    database = engine.url.database
    if not database or database == ":memory:":
        # An in-memory database lives in one process: the in-process check suffices.
        yield True
        return
    path = Path(f"{database}.retention-lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
