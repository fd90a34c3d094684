"""The embedded default sink: one append-only JSONL file per tenant under data_dir/audit."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from obsigen.audit.events import AuditEvent


class FileAuditSink:
    name = "file"

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock = asyncio.Lock()

    def path_for(self, tenant_id: str) -> Path:
        return self._directory / f"{tenant_id}.jsonl"

    async def emit(self, event: AuditEvent) -> None:
        # ASCII-escaped: U+2028/U+2029 in user text must not split a line for line-based readers.
        line = json.dumps(event.to_json(), separators=(",", ":")) + "\n"
        async with self._lock:
            await asyncio.to_thread(self._append, self.path_for(event.tenant_id), line)

    @staticmethod
    def _append(path: Path, line: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    async def aclose(self) -> None:
        return None
