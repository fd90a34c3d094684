"""Reading a run's stdout and stderr: to EOF, keeping at most a cap of each.

A stream that passes its cap calls ``on_overflow`` (the runner stops the run) and is drained
without keeping anything more, so that the writer never blocks on a full pipe.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

CHUNK = 64 * 1024


@dataclass
class Captured:
    data: bytearray
    truncated: bool = False

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


async def read_capped(
    reader: asyncio.StreamReader, cap: int, on_overflow: Callable[[], None]
) -> Captured:
    captured = Captured(bytearray())
    while chunk := await reader.read(CHUNK):
        if captured.truncated:
            continue
        room = cap - len(captured.data)
        captured.data += chunk[:room]
        if len(chunk) > room:
            captured.truncated = True
            on_overflow()
    return captured


async def feed_stdin(writer: asyncio.StreamWriter, data: bytes) -> None:
    """Write the code and close; a run that exits before reading it all is not an error."""
    try:
        writer.write(data)
        await writer.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            await writer.wait_closed()
