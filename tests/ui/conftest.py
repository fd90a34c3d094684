"""Fixtures for the browser tests: the app on a real port, users, and Debian's chromium.

Every page records console errors, uncaught exceptions and CSP violations; a test fails when
any appeared (``Watched.assert_clean``). Screenshots go to ``test-artifacts/ui/``.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyotp
import pytest
from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Page, async_playwright

from obsigen.authz.permissions import Role
from obsigen.db.engine import make_engine, make_sessionmaker
from obsigen.db.migrate import upgrade_to_head
from obsigen.identity.tenants import create_tenant, tenant_by_name
from obsigen.identity.users import create_user
from tests.conftest import platform_settings, require_service
from tests.fakes.openai_upstream import FakeUpstream
from tests.ui.server import SendEmailTool, serve_app

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"

# Reports violations from every document the page loads (expose_binding survives navigation).
WATCH_CSP = """
document.addEventListener("securitypolicyviolation", (e) => {
  const where = `${e.sourceFile}:${e.lineNumber}`;
  window.reportCsp(`${e.violatedDirective} blocked ${e.blockedURI} at ${where}`);
});
"""


@dataclass
class Account:
    tenant: str
    email: str
    password: str
    totp_secret: str | None


@dataclass
class UiApp:
    base_url: str
    upstream: FakeUpstream
    send_email: SendEmailTool
    settings: Any
    database_url: str

    async def account(self, tenant: str, role: Role) -> Account:
        engine = make_engine(self.database_url)
        try:
            async with make_sessionmaker(engine).begin() as session:
                email = f"{role.value}-{uuid.uuid4().hex[:8]}@example.eu"
                password = secrets.token_urlsafe(18)
                created = await create_user(
                    session, await tenant_by_name(session, tenant), email, role, password
                )
                return Account(tenant, email, password, created.user.totp_secret)
        finally:
            await engine.dispose()

    async def tenant(self) -> str:
        name = f"ui-{uuid.uuid4().hex[:8]}"
        engine = make_engine(self.database_url)
        try:
            async with make_sessionmaker(engine).begin() as session:
                await create_tenant(session, name)
        finally:
            await engine.dispose()
        return name


@pytest.fixture(scope="module")
async def ui_app(
    tmp_path_factory: pytest.TempPathFactory, upstream_server: tuple[FakeUpstream, str]
) -> AsyncIterator[UiApp]:
    directory = tmp_path_factory.mktemp("ui")
    url = f"sqlite+aiosqlite:///{directory / 'obsigen.db'}"
    engine = make_engine(url)
    await upgrade_to_head(engine)
    await engine.dispose()
    settings = platform_settings(directory / "var", url, upstream_server[1])
    tool = SendEmailTool()
    with serve_app(settings, tool) as base_url:
        yield UiApp(base_url, upstream_server[0], tool, settings, url)


@pytest.fixture
def fake(ui_app: UiApp) -> FakeUpstream:
    """The shared fake upstream, reset to its defaults for each test."""
    defaults = FakeUpstream()
    for name in defaults.__dataclass_fields__:
        setattr(ui_app.upstream, name, getattr(defaults, name))
    return ui_app.upstream


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    require_service("chromium at /usr/bin/chromium", os.access(CHROMIUM, os.X_OK))
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=LAUNCH_ARGS, headless=True
        )
        yield launched
        await launched.close()


@dataclass
class Watched:
    """A page plus everything that went wrong on it."""

    page: Page
    context: BrowserContext
    base_url: str
    name: str
    console_errors: list[str] = field(default_factory=list)
    csp_violations: list[str] = field(default_factory=list)
    allowed: tuple[str, ...] = ()

    async def goto(self, path: str) -> None:
        await self.page.goto(self.base_url + path)

    async def screenshot(self, label: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{self.name}-{label}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        return path

    async def login(self, account: Account, expect_path: str = "/ui/chat") -> None:
        page = self.page
        await self.goto("/ui/login")
        await page.get_by_label("Organisation").fill(account.tenant)
        await page.get_by_label("E-mail").fill(account.email)
        await page.get_by_label("Password").fill(account.password)
        if account.totp_secret:
            await page.get_by_label("Authenticator code").fill(
                pyotp.TOTP(account.totp_secret).now()
            )
        await page.get_by_role("button", name="Sign in").click()
        await page.wait_for_url(f"**{expect_path}")
        await page.wait_for_selector("body[data-ready='true']")

    def assert_clean(self) -> None:
        errors = [e for e in self.console_errors if not any(a in e for a in self.allowed)]
        assert errors == [], errors
        assert self.csp_violations == [], self.csp_violations


@pytest.fixture
async def open_page(
    browser: Browser, ui_app: UiApp, request: pytest.FixtureRequest
) -> AsyncIterator[Any]:
    """``await open_page(width)`` -> a Watched page in a fresh context (its own session)."""
    opened: list[Watched] = []

    async def make(width: int = 1440, height: int = 900) -> Watched:
        context = await browser.new_context(viewport={"width": width, "height": height})
        page = await context.new_page()
        watched = Watched(page, context, ui_app.base_url, f"{request.node.name}-{len(opened)}")

        def on_console(message: ConsoleMessage) -> None:
            if message.type in {"error", "warning"} and (
                message.type == "error" or "Content Security Policy" in message.text
            ):
                watched.console_errors.append(f"{message.type}: {message.text}")

        page.on("console", on_console)
        page.on("pageerror", lambda exc: watched.console_errors.append(f"pageerror: {exc}"))
        await page.expose_binding(
            "reportCsp", lambda _source, text: watched.csp_violations.append(text)
        )
        await page.add_init_script(WATCH_CSP)
        opened.append(watched)
        return watched

    yield make
    for watched in opened:
        await watched.context.close()
