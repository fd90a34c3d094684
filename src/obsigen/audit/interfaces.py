"""Where audit events go. Sinks are the customer's: a file, their SIEM, their database."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from obsigen.audit.events import AuditEvent


@runtime_checkable
class AuditSink(Protocol):
    name: str

    async def emit(self, event: AuditEvent) -> None:
        """Persist the event durably or raise; a sink never drops silently."""
        ...

    async def aclose(self) -> None: ...
