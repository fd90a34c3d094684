"""Mutual exclusion for one piece of work (one file's ingestion) across workers.

At-least-once delivery means a task can run twice at once: a worker that is slow, not dead,
gets its message claimed by another after ``redelivery_after_s``. Two ingestions of one file
interleaving would leave duplicate chunks, so each run holds a lock named after its work.

MariaDB/MySQL: ``GET_LOCK`` on a connection held for the run; the server frees it when the
connection ends, so a killed worker never leaves it held. SQLite: ``flock`` on a file next
to the database (only processes on one host can share the file); the kernel frees it on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

POLL_S = 0.05


def lock_name(engine: AsyncEngine, key: str) -> str:
    # GET_LOCK names are server-wide and at most 64 characters: scope them to the schema.
    digest = hashlib.sha256(f"{engine.url.database}\0{key}".encode()).hexdigest()[:40]
    return f"obsigen.task.{digest}"


@contextlib.asynccontextmanager
async def work_lock(engine: AsyncEngine, key: str, wait_s: float) -> AsyncIterator[bool]:
    """Yields True while this caller holds ``key``; False when it stayed busy for ``wait_s``."""
    if engine.dialect.name in ("mysql", "mariadb"):
        async with _named_lock(engine, lock_name(engine, key), wait_s) as held:
            yield held
    elif engine.dialect.name == "sqlite":
        async with _file_lock(engine, key, wait_s) as held:
            yield held
    else:
        yield True


@contextlib.asynccontextmanager
async def _named_lock(engine: AsyncEngine, name: str, wait_s: float) -> AsyncIterator[bool]:
    async with engine.connect() as conn:
        # GET_LOCK's timeout is whole seconds on older servers; round up, never below zero.
        got = await conn.scalar(
            text("SELECT GET_LOCK(:name, :wait)"), {"name": name, "wait": max(0, round(wait_s))}
        )
        if got != 1:
            yield False
            return
        try:
            yield True
        finally:
            await conn.scalar(text("SELECT RELEASE_LOCK(:name)"), {"name": name})


@contextlib.asynccontextmanager
async def _file_lock(engine: AsyncEngine, key: str, wait_s: float) -> AsyncIterator[bool]:
    database = engine.url.database
    if not database or database == ":memory:":
        yield True
        return
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    folder = Path(f"{database}.task-locks")
    await asyncio.to_thread(folder.mkdir, mode=0o700, exist_ok=True)
    # flock is per open file description, so two runs in one process exclude each other too.
    fd = os.open(folder / digest, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    yield False
                    return
                await asyncio.sleep(POLL_S)
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
