"""The admin console's accounts and settings sections in a real browser (Debian's chromium via
Playwright): create a user and sign in with the generated password shown once, deactivate it;
create an API key (keyboard only), use it, revoke it; change the retention periods and see them
in the data map; an auditor sees settings read-only. No console errors or CSP violations on any
page, at 1440 px light and 375 px dark without sideways scrolling."""

from __future__ import annotations

from typing import Any

import httpx
from playwright.async_api import Dialog, Page, expect

from obsigen.authz.permissions import Role
from tests.ui.conftest import Account, UiApp


async def _admin_page(watched: Any, account: Account) -> Page:
    await watched.login(account)
    page: Page = watched.page
    await watched.goto("/ui/admin")
    await page.wait_for_selector("body[data-ready='true'][data-accounts-ready='true']")
    return page


def _accept_dialogs(page: Page, seen: list[str]) -> None:
    async def accept(dialog: Dialog) -> None:
        seen.append(dialog.message)
        await dialog.accept()

    page.on("dialog", accept)


async def test_admin_creates_a_user_who_signs_in_and_is_then_deactivated(
    ui_app: UiApp, fake: Any, open_page: Any
) -> None:
    tenant = await ui_app.tenant()
    admin = await ui_app.account(tenant, Role.ADMIN)
    watched = await open_page()
    page = await _admin_page(watched, admin)
    section = page.locator("#accounts")
    await expect(section).to_be_visible()
    email = f"newcomer-{tenant}@example.eu"

    await section.get_by_label("E-mail", exact=True).fill(email)
    await section.get_by_label("Role", exact=True).select_option("member")
    await section.get_by_role("button", name="Create user").click()

    shown = page.locator("#user-created")
    await expect(shown).to_be_visible()
    await expect(shown).to_contain_text("Generated password")
    password = await shown.locator("dd code").nth(1).inner_text()
    assert len(password) >= 20
    row = page.locator("#accounts-body tr", has_text=email)
    await expect(row).to_have_attribute("data-status", "active")
    await watched.screenshot("admin-user-created")
    # The secret leaves the page once the admin is done with it.
    await page.get_by_role("button", name="Done, hide them").click()
    await expect(shown).to_be_hidden()
    assert password not in await page.content()

    newcomer = await open_page()
    await newcomer.login(Account(tenant, email, password, None))
    await expect(newcomer.page.get_by_label("Message", exact=True)).to_be_visible()

    dialogs: list[str] = []
    _accept_dialogs(page, dialogs)
    await row.get_by_role("button", name=f"Deactivate {email}").click()
    await expect(row).to_have_attribute("data-status", "inactive")
    await expect(page.locator("#notice")).to_contain_text("deactivated")
    assert "sessions end" in dialogs[0]
    await expect(row.get_by_role("button", name=f"Reactivate {email}")).to_be_visible()
    # The newcomer's session ended with the deactivation: the next call sends them to login.
    await newcomer.page.reload()
    await newcomer.page.wait_for_url("**/ui/login?*expired=1")
    newcomer.allowed = ("401 (Unauthorized)",)
    await watched.screenshot("admin-user-deactivated")
    watched.assert_clean()
    newcomer.assert_clean()


async def test_admin_creates_an_api_key_with_the_keyboard_and_revokes_it(
    ui_app: UiApp, fake: Any, open_page: Any
) -> None:
    tenant = await ui_app.tenant()
    admin = await ui_app.account(tenant, Role.ADMIN)
    watched = await open_page()
    page = await _admin_page(watched, admin)
    keys = page.locator("#api-keys")
    await expect(keys).to_be_visible()
    # Roles that need a second factor are not offered for a key.
    offered = await keys.get_by_label("API key role").locator("option").all_inner_texts()
    assert "member" in offered
    assert "admin" not in offered

    await keys.get_by_label("API key name").focus()
    await page.keyboard.type("nightly export")
    await page.keyboard.press("Tab")  # the role select: member is preselected
    await page.keyboard.press("Tab")
    await page.keyboard.press("Control+a")
    await page.keyboard.type("30")
    await page.keyboard.press("Enter")

    shown = page.locator("#apikey-created")
    await expect(shown).to_be_visible()
    key = await shown.locator("dd code").nth(1).inner_text()
    assert key.startswith("obs_")
    row = page.locator("#apikeys-body tr", has_text="nightly export")
    await expect(row).to_have_attribute("data-state", "active")
    await expect(row).to_contain_text("member")
    async with httpx.AsyncClient(base_url=ui_app.base_url) as client:
        headers = {"Authorization": f"Bearer {key}"}
        assert (await client.get("/v1/models", headers=headers)).status_code == 200
        await watched.screenshot("admin-api-key-created")
        await page.get_by_role("button", name="Done, hide the key").click()
        assert key not in await page.content()

        dialogs: list[str] = []
        _accept_dialogs(page, dialogs)
        await row.get_by_role("button", name="Revoke nightly export").click()
        await expect(page.locator("#notice")).to_contain_text("revoked")
        await expect(row).to_have_count(0)
        assert (await client.get("/v1/models", headers=headers)).status_code == 401
    await keys.get_by_label("Show revoked keys").check()
    await expect(page.locator("#apikeys-body tr", has_text="nightly export")).to_have_attribute(
        "data-state", "revoked"
    )
    watched.assert_clean()


async def test_admin_changes_retention_and_sees_it_in_the_data_map(
    ui_app: UiApp, fake: Any, open_page: Any
) -> None:
    tenant = await ui_app.tenant()
    admin = await ui_app.account(tenant, Role.ADMIN)
    watched = await open_page()
    page = await _admin_page(watched, admin)
    retention = page.locator("#retention")
    files = retention.get_by_label("Uploaded files")
    await expect(files).to_have_attribute("placeholder", "365")

    await files.fill("30")
    await retention.get_by_label("Audit events").fill("100")
    await retention.get_by_role("button", name="Save retention").click()
    # Below the audit floor: refused by the browser's own check first, then by the server.
    assert await retention.get_by_label("Audit events").evaluate("i => !i.validity.valid")
    await retention.get_by_label("Audit events").fill("")
    await retention.get_by_role("button", name="Save retention").click()

    await expect(page.locator("#notice")).to_contain_text("Retention periods saved")
    await expect(page.locator("#retention-files_days-hint")).to_contain_text(
        "Now 30 days (chosen here)"
    )
    await page.reload()
    await page.wait_for_selector("body[data-accounts-ready='true']")
    await expect(files).to_have_value("30")
    data_map = page.locator("#data-map")
    uploads = data_map.locator("tr", has_text="uploads")
    await expect(uploads).to_contain_text("30 days")
    await expect(data_map.locator("tr", has_text="audit events")).to_contain_text("400 days")
    # Stores by kind only: the fake model's loopback address is not shown to a tenant.
    assert "127.0.0.1" not in await data_map.inner_text()
    await watched.screenshot("admin-retention-1440")

    # The same session on a phone (a second login would replay the TOTP code), dark theme.
    await page.set_viewport_size({"width": 375, "height": 812})
    await page.get_by_role("button", name="Dark theme").click()
    await expect(data_map.locator("tbody tr").first).to_be_visible()
    assert await page.evaluate("document.documentElement.scrollWidth") <= 375
    await watched.screenshot("admin-accounts-375-dark")
    watched.assert_clean()


async def test_an_auditor_sees_settings_read_only_and_no_account_tools(
    ui_app: UiApp, fake: Any, open_page: Any
) -> None:
    tenant = await ui_app.tenant()
    auditor = await ui_app.account(tenant, Role.AUDITOR)
    watched = await open_page()
    page = await _admin_page(watched, auditor)

    await expect(page.locator("#accounts")).to_be_hidden()
    await expect(page.locator("#api-keys")).to_be_hidden()
    await expect(page.locator("#retention")).to_be_visible()
    await expect(page.locator("#retention").get_by_label("Conversations")).to_be_disabled()
    await expect(page.get_by_role("button", name="Save retention")).to_be_hidden()
    await expect(page.locator("#data-map tbody tr")).not_to_have_count(0)
    watched.assert_clean()
