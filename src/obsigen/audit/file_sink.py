"""The embedded default sink: one append-only JSONL file per tenant under data_dir/audit.

A file that would grow past ``max_bytes`` is rotated first: renamed to
``<tenant>-<UTC time>.jsonl`` (never overwritten, never deleted here: the copies are for
shipping and the operator's log rotation decides how long they stay) and a new one started.
A line never spans two files.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from obsigen.audit.events import AuditEvent

DEFAULT_MAX_BYTES = 64 * 1024 * 1024


class FileAuditSink:
    name = "file"

    def __init__(self, directory: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_bytes < 1024:
            raise ValueError("max_bytes must be at least 1024")
        self._max_bytes = max_bytes
        self._directory = directory
        self._directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock = asyncio.Lock()

    def path_for(self, tenant_id: str) -> Path:
        return self._directory / f"{tenant_id}.jsonl"

    async def emit(self, event: AuditEvent) -> None:
        await self.emit_many((event,))

    async def emit_many(self, events: Sequence[AuditEvent]) -> None:
        """Append ``events`` in this order, with one trip to a thread for all of them."""
        lines: dict[str, list[bytes]] = {}
        for event in events:
            # ASCII-escaped: U+2028/U+2029 in user text must not split a line for line-based
            # readers.
            line = json.dumps(event.to_json(), separators=(",", ":")) + "\n"
            lines.setdefault(event.tenant_id, []).append(line.encode())
        async with self._lock:
            await asyncio.to_thread(self._append_all, lines)

    def rotated(self, tenant_id: str) -> list[Path]:
        """Rotated files of a tenant, oldest first."""
        return sorted(self._directory.glob(f"{tenant_id}-*.jsonl"))

    def _append_all(self, lines: dict[str, list[bytes]]) -> None:
        for tenant_id, tenant_lines in lines.items():
            self._append(tenant_id, tenant_lines)

    def _append(self, tenant_id: str, lines: list[bytes]) -> None:
        """One write per file: the lines that fit before the next rotation go together."""
        path = self.path_for(tenant_id)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            size = 0
        pending: list[bytes] = []
        for line in lines:
            if size and size + len(line) > self._max_bytes:
                self._write(path, pending)
                pending = []
                self._rotate(tenant_id, path)
                size = 0
            pending.append(line)
            size += len(line)
        self._write(path, pending)

    @staticmethod
    def _write(path: Path, lines: list[bytes]) -> None:
        if not lines:
            return
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, b"".join(lines))
        finally:
            os.close(fd)

    def _rotate(self, tenant_id: str, path: Path) -> None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        target = self._directory / f"{tenant_id}-{stamp}.jsonl"
        n = 1
        while target.exists():  # two rotations within a microsecond: keep both
            target = self._directory / f"{tenant_id}-{stamp}-{n}.jsonl"
            n += 1
        path.rename(target)

    async def aclose(self) -> None:
        return None
