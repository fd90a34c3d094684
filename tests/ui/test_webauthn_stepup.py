"""WebAuthn in a real browser: Chromium's virtual authenticator (CDP ``WebAuthn.*``: CTAP2,
internal transport, user verification) registers a security key through the admin page, and
a later password-only admin session steps up with it and gets its administrative sections.

Run twice: with the browser's own JSON helpers (``parseRequestOptionsFromJSON``, ``toJSON``)
and with them removed, which drives the page's own base64url conversion."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Browser, CDPSession, Page, async_playwright, expect
from sqlalchemy import select, update

from obsigen.authz.permissions import Role
from obsigen.config import Settings
from obsigen.db.auth_models import WebAuthnCredential
from obsigen.db.engine import make_engine, make_sessionmaker
from obsigen.db.models import User
from tests.conftest import require_service
from tests.fakes.openai_upstream import FakeUpstream
from tests.ui.apps import ui_app_at
from tests.ui.conftest import CHROMIUM, LAUNCH_ARGS, Account, UiApp, Watched

# WebAuthn refuses IP addresses as relying party ids: this app is reached as localhost, which
# the test browser must then resolve (to loopback, as everything else here).
BROWSER_ARGS = [
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost"
    if arg.startswith("--host-resolver-rules")
    else arg
    for arg in LAUNCH_ARGS
]
WITHOUT_JSON_HELPERS = """
delete PublicKeyCredential.parseCreationOptionsFromJSON;
delete PublicKeyCredential.parseRequestOptionsFromJSON;
delete PublicKeyCredential.prototype.toJSON;
"""


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    require_service("chromium at /usr/bin/chromium", os.access(CHROMIUM, os.X_OK))
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=BROWSER_ARGS, headless=True
        )
        yield launched
        await launched.close()


@pytest.fixture(scope="module")
async def ui_app(
    tmp_path_factory: pytest.TempPathFactory, upstream_server: tuple[FakeUpstream, str]
) -> AsyncIterator[UiApp]:
    def configure(settings: Settings, base_url: str) -> None:
        settings.auth = settings.auth.model_copy(
            update={"webauthn_rp_id": "localhost", "webauthn_origins": [base_url]}
        )

    directory = tmp_path_factory.mktemp("ui-webauthn")
    async with ui_app_at(directory, upstream_server, host="localhost", configure=configure) as app:
        yield app


async def admin_without_totp(ui_app: UiApp, tenant: str) -> Account:
    """An admin whose only credential is a password, as one provisioned through SSO without the
    IdP's MFA: every administrative route wants a step-up from this session."""
    account = await ui_app.account(tenant, Role.ADMIN)
    engine = make_engine(ui_app.database_url)
    try:
        async with make_sessionmaker(engine).begin() as session:
            await session.execute(
                update(User).where(User.email == account.email).values(totp_secret=None)
            )
    finally:
        await engine.dispose()
    return Account(account.tenant, account.email, account.password, None)


async def stored_keys(ui_app: UiApp, email: str) -> list[WebAuthnCredential]:
    engine = make_engine(ui_app.database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            rows = await session.scalars(
                select(WebAuthnCredential)
                .join(User, User.id == WebAuthnCredential.user_id)
                .where(User.email == email)
            )
            return list(rows)
    finally:
        await engine.dispose()


async def virtual_authenticator(page: Page) -> tuple[CDPSession, str]:
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("WebAuthn.enable", {"enableUI": False})
    added = await cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    return cdp, added["authenticatorId"]


async def not_ready(page: Page) -> None:
    """admin.js marks the body ready when every section has loaded; unmark it before an action
    that reloads them, so the test can wait for that reload to end."""
    await page.evaluate("document.body.dataset.ready = 'false'")


async def admin_page(watched: Watched) -> Page:
    await watched.goto("/ui/admin")
    await watched.page.wait_for_selector("body[data-ready='true']")
    return watched.page


@pytest.mark.parametrize("helpers", ["native", "own-base64url"])
async def test_register_a_security_key_then_step_up_with_it(
    ui_app: UiApp, fake: Any, open_page: Any, helpers: str
) -> None:
    tenant = await ui_app.tenant()
    admin = await admin_without_totp(ui_app, tenant)
    watched = await open_page()
    page = watched.page
    if helpers == "own-base64url":
        await page.add_init_script(WITHOUT_JSON_HELPERS)
    cdp, authenticator = await virtual_authenticator(page)

    await watched.login(admin)
    await admin_page(watched)
    has_helpers = await page.evaluate("typeof PublicKeyCredential.parseRequestOptionsFromJSON")
    assert has_helpers == ("function" if helpers == "native" else "undefined")
    # A password-only session: the administrative sections wait for a second factor.
    await expect(page.get_by_role("heading", name="Confirm it is you")).to_be_visible()
    await expect(page.locator("#approvals-body tr")).to_have_count(0)

    # Register this device's key: it also proves the factor, so the sections open at once.
    await page.get_by_label("Security key name", exact=True).fill("virtual key")
    await not_ready(page)
    await page.get_by_role("button", name="Register a security key").click()
    await expect(page.locator("#keys-status")).to_contain_text("“virtual key” registered")
    await expect(page.locator("#stepup")).to_be_hidden()
    await page.wait_for_selector("body[data-ready='true']")  # the sections loaded again
    [key] = await stored_keys(ui_app, admin.email)
    assert key.name == "virtual key"
    held = (await cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator}))[
        "credentials"
    ]
    assert len(held) == 1
    assert held[0]["rpId"] == "localhost"

    # A new session with the password alone (this tab forgets the stepped-up one), then the key.
    await page.evaluate("sessionStorage.clear()")
    await watched.login(admin)
    await admin_page(watched)
    await expect(page.locator("#stepup")).to_be_visible()
    before = await page.evaluate("JSON.parse(sessionStorage.getItem('obsigen.session')).mfa")
    assert before is False

    await not_ready(page)
    await page.get_by_role("button", name="Use a security key").click()

    await expect(page.locator("#stepup")).to_be_hidden()
    await page.wait_for_selector("body[data-ready='true']")
    await expect(page.locator("#federation")).to_be_visible()
    await expect(page.locator("#policy-version")).to_have_text("Built-in policy (version 0)")
    after = await page.evaluate("JSON.parse(sessionStorage.getItem('obsigen.session')).mfa")
    assert after is True
    # The server verified the assertion against the stored key and recorded its use.
    [used] = await stored_keys(ui_app, admin.email)
    assert used.last_used_at is not None
    await watched.screenshot(f"webauthn-stepped-up-{helpers}")
    # The first visit's refused administrative calls (403 mfa-required) are the point.
    watched.allowed = ("403 (Forbidden)",)
    watched.assert_clean()


async def test_a_key_of_another_browser_does_not_step_up(
    ui_app: UiApp, fake: Any, open_page: Any
) -> None:
    """The attack side: a session whose user has a registered key, asked from a browser whose
    authenticator holds no credential for it, stays without a second factor."""
    tenant = await ui_app.tenant()
    admin = await admin_without_totp(ui_app, tenant)
    owner = await open_page()
    await virtual_authenticator(owner.page)
    await owner.login(admin)
    await admin_page(owner)
    await not_ready(owner.page)
    await owner.page.get_by_role("button", name="Register a security key").click()
    await expect(owner.page.locator("#keys-status")).to_contain_text("registered")
    await owner.page.wait_for_selector("body[data-ready='true']")

    other = await open_page()
    await virtual_authenticator(other.page)  # an authenticator, but not the registered one
    await other.login(admin)
    page = await admin_page(other)
    await page.get_by_role("button", name="Use a security key").click()

    await expect(page.locator("#stepup-error")).to_contain_text("did not answer")
    await expect(page.locator("#stepup")).to_be_visible()
    assert await page.evaluate("JSON.parse(sessionStorage.getItem('obsigen.session')).mfa") is False
    other.allowed = ("403 (Forbidden)",)
    other.assert_clean()
