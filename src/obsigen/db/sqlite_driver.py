"""aiosqlite with one trip to its worker thread per statement.

SQLAlchemy's aiosqlite adapter makes three or four trips for every statement (open a cursor,
execute, fetch the rows, close the cursor). Each trip hands the work to aiosqlite's thread and
wakes the event loop again through its self-pipe, and those hand-offs, not SQLite, were most
of the CPU a chat turn spent in the database (docs/performance.md). Here one call on that
thread opens a sqlite3 cursor, executes, fetches every row and closes the cursor.

Two more trips are saved per transaction: ``BEGIN IMMEDIATE`` travels with the
transaction's first statement (see :meth:`OneTripConnection.defer_begin`), and a commit or
rollback is not sent when no statement went out since the last one that completed (the
pool's rollback when a connection comes back after its commit, a session that ran nothing).

The SQL, the transactions, the locking and the rows are those of the stock adapter, which
also fetches every row at once (server-side cursors keep the stock class). The trip goes
through ``aiosqlite.Connection._execute``, not public API: :func:`one_trip_dbapi` returns
None on an aiosqlite without it, and the engine keeps the stock adapter.
"""

from __future__ import annotations

import collections
import sqlite3
from functools import partial
from typing import Any

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import EMPTY_DICT
from sqlalchemy.util.concurrency import await_

# What one trip brings back: description, rowcount, lastrowid, rows.
_Outcome = tuple[Any, int, int | None, list[Any]]


def _run(
    connection: Any, begin: str | None, operation: str, parameters: Any, many: bool
) -> _Outcome:
    """Runs on aiosqlite's thread, where its sqlite3 connection lives (``connection`` is
    the ``aiosqlite.Connection``)."""
    cursor: sqlite3.Cursor = connection._conn.cursor()
    try:
        if begin is not None:
            cursor.execute(begin)
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else []
        return description, cursor.rowcount, cursor.lastrowid, rows
    finally:
        cursor.close()


class OneTripCursor(AsyncAdapt_aiosqlite_cursor):
    """A DB-API cursor whose every execute is one call on aiosqlite's thread."""

    __slots__ = ("_arraysize", "_description", "_lastrowid", "_rowcount")

    def __init__(self, adapt_connection: AsyncAdapt_aiosqlite_connection) -> None:
        # No aiosqlite cursor is opened here (that alone is a trip): each execute makes and
        # closes its own sqlite3 cursor on the worker thread.
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None
        self._arraysize = 1

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> Any:
        return self._lastrowid

    @property
    def arraysize(self) -> int:
        return self._arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._arraysize = value

    async def _async_soft_close(self) -> None:
        # Nothing is open between trips; the description stays readable as it is.
        return None

    def close(self) -> None:
        self._rows.clear()

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        try:
            return await_(self._trip(operation, parameters, many=False))
        except Exception as error:  # noqa: BLE001 - re-raised, mapped as the stock adapter does
            self._adapt_connection._handle_exception(error)

    def executemany(self, operation: Any, seq_of_parameters: Any) -> Any:
        try:
            return await_(self._trip(operation, seq_of_parameters, many=True))
        except Exception as error:  # noqa: BLE001 - re-raised, mapped as the stock adapter does
            self._adapt_connection._handle_exception(error)

    async def _trip(self, operation: Any, parameters: Any, *, many: bool) -> None:
        adapted = self._adapt_connection
        async with adapted._execute_mutex:
            begin = None
            if isinstance(adapted, OneTripConnection):
                begin = adapted.take_begin()
                adapted.sent_statement()
            outcome: _Outcome = await self._connection._execute(
                partial(_run, self._connection, begin, operation, parameters, many)
            )
        self._description, self._rowcount, self._lastrowid, rows = outcome
        self._rows = collections.deque(rows)

    def nextset(self) -> None:
        # sqlite3 has a single result set per statement.
        return None

    def setinputsizes(self, *inputsizes: Any) -> None:
        return None


class OneTripConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ("_deferred_begin", "_maybe_open")
    _cursor_cls = OneTripCursor  # type: ignore[assignment]

    def __init__(self, dbapi: Any, connection: Any) -> None:
        super().__init__(dbapi, connection)
        self._deferred_begin: str | None = None
        # A statement went out since the last commit or rollback that completed: a
        # transaction may be open. Cleared only once an end has come back, never on a guess:
        # a trip whose caller was cancelled still runs on the thread, and the end sent after
        # it must run after it too (the thread takes them in order).
        self._maybe_open = True

    def defer_begin(self, statement: str) -> None:
        """Send ``statement`` (a BEGIN) just before the next statement, on the same trip.

        Nothing reaches the database between the two either way, so the transaction, its
        lock and any error (a busy timeout) are the same; only the trip is saved.
        """
        self._deferred_begin = statement

    def take_begin(self) -> str | None:
        begin, self._deferred_begin = self._deferred_begin, None
        return begin

    def sent_statement(self) -> None:
        self._maybe_open = True

    def commit(self) -> None:
        if self._nothing_to_end():
            return
        super().commit()
        self._maybe_open = False

    def rollback(self) -> None:
        if self._nothing_to_end():
            return
        super().rollback()
        self._maybe_open = False

    def _nothing_to_end(self) -> bool:
        """True when ending the transaction would be a trip that does nothing."""
        self.take_begin()  # begun, but no statement followed: that BEGIN is never sent
        return not self._maybe_open


class OneTripDBAPI(AsyncAdapt_aiosqlite_dbapi):
    def connect(self, *arg: Any, **kw: Any) -> OneTripConnection:
        stock = super().connect(*arg, **kw)
        return OneTripConnection(self, stock._connection)


def defer_begin(dbapi_connection: Any, statement: str) -> bool:
    """Defer ``statement`` to the next statement's trip where the connection can; False:
    the caller sends it itself."""
    if isinstance(dbapi_connection, OneTripConnection):
        dbapi_connection.defer_begin(statement)
        return True
    return False


def one_trip_dbapi() -> OneTripDBAPI | None:
    """The DB-API module for ``create_async_engine(module=...)``; None: keep the stock one."""
    if not callable(getattr(aiosqlite.Connection, "_execute", None)):
        return None
    return OneTripDBAPI(aiosqlite, sqlite3)
