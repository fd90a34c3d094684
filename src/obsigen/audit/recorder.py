"""Fans each event out to every configured sink.

The database sink is the record and is awaited to the commit; the file sink appends locally.
Remote sinks (syslog, OTLP, S3) sit behind a disk spool (audit/spool.py): their ``emit`` is a
local append, so a slow or dead SIEM never holds up a turn, and delivery runs in the
background. Every sink gets every event: one that fails does not keep the event from the
others, and the failure is raised afterwards, so an event nobody could keep is never silent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, runtime_checkable

from obsigen.audit.canonical import canonical_text
from obsigen.audit.events import AuditEvent
from obsigen.audit.interfaces import AuditSink
from obsigen.metrics import emit_counted, watch_audit_sinks

logger = logging.getLogger("obsigen.audit")


@runtime_checkable
class BackgroundSink(Protocol):
    """A sink with background delivery (the spooled ones)."""

    def start(self) -> None: ...

    async def flush(self, timeout_s: float) -> bool: ...


async def _emit_all(sink: AuditSink, events: Sequence[AuditEvent]) -> None:
    # The database and file sinks keep several events with one write (``emit_many``); the
    # others get them one by one, in order.
    emit_many: Callable[[Sequence[AuditEvent]], Awaitable[None]] | None = getattr(
        sink, "emit_many", None
    )
    if emit_many is not None:
        await emit_many(events)
        return
    for event in events:
        await sink.emit(event)


class AuditRecorder:
    def __init__(self, sinks: Sequence[AuditSink]) -> None:
        self._sinks = tuple(sinks)
        self._started = False
        watch_audit_sinks(self._sinks)

    @property
    def sinks(self) -> tuple[AuditSink, ...]:
        return self._sinks

    @property
    def background_sinks(self) -> tuple[BackgroundSink, ...]:
        return tuple(sink for sink in self._sinks if isinstance(sink, BackgroundSink))

    def start(self) -> None:
        """Start background delivery, so events a previous process spooled go out now.

        Call it once the event loop runs (app start-up). Without it delivery starts with
        the first event recorded.
        """
        if self._started:
            return
        self._started = True
        for sink in self.background_sinks:
            sink.start()

    async def record(self, event: AuditEvent) -> None:
        await self.record_many((event,))

    async def record_many(self, events: Sequence[AuditEvent]) -> None:
        """Record ``events`` in this order, each sink taking them together where it can (the
        database in one transaction, the file in one write); returns once every sink kept all
        of them, and raises as ``record`` does."""
        if not events:
            return
        # An event without a JSON form (NaN, say) is refused before any sink sees it, so no
        # copy holds what the record cannot.
        for event in events:
            canonical_text(event.to_json())
        self.start()
        if len(self._sinks) == 1:
            sink = self._sinks[0]
            await emit_counted(sink, _emit_all(sink, events), len(events))
            return
        results = await asyncio.gather(
            *(emit_counted(s, _emit_all(s, events), len(events)) for s in self._sinks),
            return_exceptions=True,
        )
        errors = [
            (sink, result)
            for sink, result in zip(self._sinks, results, strict=True)
            if isinstance(result, BaseException)
        ]
        if not errors:
            return
        ids = ",".join(event.event_id for event in events)
        for sink, error in errors[1:]:
            logger.error("audit sink %s failed event(s) %s: %s", sink.name, ids, error)
        raise errors[0][1]

    async def flush(self, timeout_s: float) -> bool:
        """Wait until the background sinks delivered everything; False if time ran out."""
        results = await asyncio.gather(*(sink.flush(timeout_s) for sink in self.background_sinks))
        return all(results)

    async def aclose(self) -> None:
        # Concurrently: each spooled sink takes up to its close timeout to deliver what it can.
        results = await asyncio.gather(
            *(sink.aclose() for sink in self._sinks), return_exceptions=True
        )
        errors = [result for result in results if isinstance(result, BaseException)]
        for error in errors[1:]:
            logger.error("closing an audit sink failed: %s", error)
        if errors:
            raise errors[0]
