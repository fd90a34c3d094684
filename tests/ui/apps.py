"""The UI app for browser tests whose settings name the app's own URL (SSO's public_url,
WebAuthn's origin): the port is taken first, then the settings are made, then the app runs."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pyotp

from obsigen.config import Settings
from obsigen.db.engine import make_engine
from obsigen.db.migrate import upgrade_to_head
from tests.conftest import platform_settings
from tests.fakes.openai_upstream import FakeUpstream
from tests.ui.conftest import Account, UiApp
from tests.ui.server import SendEmailTool, listening_socket, serve_app


@contextlib.asynccontextmanager
async def ui_app_at(
    directory: Path,
    upstream_server: tuple[FakeUpstream, str],
    *,
    host: str = "127.0.0.1",
    configure: Callable[[Settings, str], None] | None = None,
) -> AsyncIterator[UiApp]:
    """The app on a loopback port, reached as ``http://{host}:{port}``; ``configure`` gets the
    settings and that base URL before the app starts."""
    url = f"sqlite+aiosqlite:///{directory / 'obsigen.db'}"
    engine = make_engine(url)
    await upgrade_to_head(engine)
    await engine.dispose()
    settings = platform_settings(directory / "var", url, upstream_server[1])
    sock = listening_socket()
    base_url = f"http://{host}:{sock.getsockname()[1]}"
    if configure is not None:
        configure(settings, base_url)
    tool = SendEmailTool()
    with serve_app(settings, tool, sock=sock):
        yield UiApp(base_url, upstream_server[0], tool, settings, url)


async def api_token(base_url: str, account: Account) -> str:
    """An access token for ``account`` through the JSON login (with its TOTP when it has one)."""
    body = {"tenant": account.tenant, "email": account.email, "password": account.password}
    if account.totp_secret:
        body["totp"] = pyotp.TOTP(account.totp_secret).now()
    async with httpx.AsyncClient(base_url=base_url) as client:
        response = await client.post("/auth/login", json=body)
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token
