"""The one way a stored object (upload or artifact) goes back to its owner: as data, never
rendered by the browser."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi.responses import StreamingResponse

from obsigen.files.names import content_disposition


def stored_object_response(
    stream: AsyncIterator[bytes], *, name: str, content_type: str, size: int
) -> StreamingResponse:
    return StreamingResponse(
        stream,
        media_type=content_type,
        headers={
            "Content-Length": str(size),
            "Content-Disposition": content_disposition(name),
            # Served as data, never rendered: no sniffing, no scripts, no caching.
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "Cache-Control": "private, no-store",
        },
    )
