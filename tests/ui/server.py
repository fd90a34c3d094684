"""The real app under uvicorn on a free loopback port, in a thread with its own event loop.

The browser needs a real socket; the services are built inside the server's loop (they hold
loop-bound connections) and a high-sensitivity test tool is registered so that a tool call
waits for an approver.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from obsigen.app import create_app
from obsigen.config import Settings
from obsigen.inference.interfaces import ToolSpec
from obsigen.services import build_services
from obsigen.tools.interfaces import Sensitivity, ToolContext, ToolResult


class SendEmailTool:
    """Stands for a tool with side effects: high sensitivity, so the default policy parks it."""

    sensitivity: Sensitivity = "high"

    def __init__(self) -> None:
        self.spec = ToolSpec(
            name="send_email",
            description="send an e-mail",
            parameters={"type": "object", "properties": {"to": {"type": "string"}}},
        )
        self.runs: list[dict[str, Any]] = []

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        self.runs.append(arguments)
        return ToolResult("sent")


def listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def serve_app(
    settings: Settings, send_email: SendEmailTool, sock: socket.socket | None = None
) -> Iterator[str]:
    """Serve the app on 127.0.0.1 (on ``sock`` when given: settings that name the app's own
    URL need the port first); yield its base URL."""
    if sock is None:
        sock = listening_socket()
    port = sock.getsockname()[1]
    holder: dict[str, uvicorn.Server] = {}
    failed: list[BaseException] = []

    async def main() -> None:
        services = build_services(settings)
        services.tools.register(send_email)
        app = create_app(settings, services)
        config = uvicorn.Config(
            app,
            log_level="warning",
            http="h11",
            ws="none",
            access_log=False,
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)
        holder["server"] = server
        try:
            await server.serve(sockets=[sock])
        finally:
            await services.aclose()

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread, which raises
            failed.append(exc)

    thread = threading.Thread(target=run, daemon=True, name="ui-app-server")
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not (holder.get("server") and holder["server"].started):
            if failed or not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the app server did not start: {failed!r}")
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        if "server" in holder:
            holder["server"].should_exit = True
        thread.join(timeout=15)
        sock.close()
