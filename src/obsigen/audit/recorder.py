"""Fans each event out to every configured sink."""

from __future__ import annotations

from collections.abc import Sequence

from obsigen.audit.events import AuditEvent
from obsigen.audit.interfaces import AuditSink


class AuditRecorder:
    def __init__(self, sinks: Sequence[AuditSink]) -> None:
        self._sinks = tuple(sinks)

    @property
    def sinks(self) -> tuple[AuditSink, ...]:
        return self._sinks

    async def record(self, event: AuditEvent) -> None:
        # A sink that fails raises: the audit issue adds a disk spool so nothing is dropped.
        for sink in self._sinks:
            await sink.emit(event)

    async def aclose(self) -> None:
        for sink in self._sinks:
            await sink.aclose()
