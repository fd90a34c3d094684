"""Identity providers, group mappings and the tool policy edited on the admin page in a real
browser: add, edit, delete, and the server's refusals shown from its problem documents."""

from __future__ import annotations

import json
from typing import Any

import httpx
from playwright.async_api import Page, expect

from obsigen.authz.permissions import Role
from tests.ui.conftest import ARTIFACTS, UiApp, Watched


async def open_admin(watched: Watched) -> Page:
    await watched.goto("/ui/admin")
    await watched.page.wait_for_selector("body[data-ready='true']")
    return watched.page


async def session_token(page: Page) -> str:
    """The signed-in page's own access token (a second TOTP login would replay the code)."""
    token: str = await page.evaluate(
        "JSON.parse(sessionStorage.getItem('obsigen.session')).access_token"
    )
    return token


async def api_get(ui_app: UiApp, token: str, path: str) -> Any:
    async with httpx.AsyncClient(base_url=ui_app.base_url) as client:
        response = await client.get(path, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    return response.json()


async def test_admin_adds_edits_and_deletes_an_identity_provider_and_its_mappings(
    ui_app: UiApp, fake: Any, open_page: Any
) -> None:
    tenant = await ui_app.tenant()
    admin = await ui_app.account(tenant, Role.ADMIN)
    watched = await open_page()
    await watched.login(admin)
    page = await open_admin(watched)
    token = await session_token(page)
    section = page.locator("#federation")
    mapping_form = section.get_by_role("form", name="Map a group to a role")
    await expect(section.get_by_text("No identity provider yet.")).to_be_visible()

    # Refused first: a wildcard domain and an inline client secret, each explained.
    await section.get_by_label("Slug").fill("corp")
    await section.get_by_label("Display name").fill("Corp login")
    await section.get_by_label("E-mail domains").fill("*.example.eu")
    await section.get_by_role("button", name="Add identity provider").click()
    await expect(page.locator("#idp-error")).to_contain_text("domains: not domain names")
    await section.get_by_label("E-mail domains").fill("corp.example.eu, example.eu")
    config = section.get_by_label("Protocol configuration (JSON)")
    template = json.loads(await config.input_value())
    inline = {"client_secret": "hunter2-inline"}  # pragma: allowlist secret
    await config.fill(json.dumps(template | inline))
    await section.get_by_role("button", name="Add identity provider").click()
    await expect(page.locator("#idp-error")).to_contain_text("client_secret")
    await config.fill("{not json")
    await section.get_by_role("button", name="Add identity provider").click()
    await expect(page.locator("#idp-error")).to_contain_text("not valid JSON")
    assert (await api_get(ui_app, token, "/api/v1/idps"))["data"] == []

    # Then accepted.
    await config.fill(json.dumps(template))
    await section.get_by_label("Create unknown users at their first sign-in (JIT)").check()
    await section.get_by_role("button", name="Add identity provider").click()
    await expect(page.locator("#notice")).to_contain_text("Corp login added")
    row = page.locator("#idps-body tr")
    await expect(row).to_have_count(1)
    await expect(row).to_contain_text("corp.example.eu, example.eu")
    await expect(row).to_contain_text("JIT")
    await expect(page.locator("#idp-error")).to_be_hidden()

    # Edit: the slug and protocol are fixed, the rest changes.
    await row.get_by_role("button", name="Edit Corp login").click()
    await expect(section.get_by_label("Slug")).to_be_disabled()
    await section.get_by_label("Display name").fill("Corp staff login")
    await section.get_by_label("Count the IdP's MFA as the second factor").check()
    await section.get_by_role("button", name="Save changes").click()
    await expect(page.locator("#notice")).to_contain_text("Corp staff login saved")
    await expect(row).to_contain_text("trusts IdP MFA")
    [stored] = (await api_get(ui_app, token, "/api/v1/idps"))["data"]
    assert stored["display_name"] == "Corp staff login"
    assert stored["trust_idp_mfa"] is True
    assert stored["jit_provisioning"] is True
    assert stored["slug"] == "corp"

    # Group mappings: to a role the admin holds, yes; to owner (more than the admin), no.
    await expect(mapping_form.get_by_label("Source")).to_have_value(f"idp:{stored['id']}")
    await mapping_form.get_by_label("Group").fill("staff")
    await mapping_form.get_by_label("Role").fill("member")
    await section.get_by_role("button", name="Add mapping").click()
    mapping = page.locator("#mappings-body tr")
    await expect(mapping).to_have_count(1)
    await expect(mapping).to_contain_text("Corp staff login")
    await mapping_form.get_by_label("Group").fill("it")
    await mapping_form.get_by_label("Role").fill("owner")
    await section.get_by_role("button", name="Add mapping").click()
    await expect(page.locator("#mapping-error")).to_have_text(
        "cannot map to role 'owner': it carries permissions you do not hold"
    )
    await expect(mapping).to_have_count(1)
    await watched.screenshot("federation-1440")

    # Deleting takes a second, confirming press.
    delete = mapping.get_by_role("button", name="Delete mapping staff → member")
    await delete.click()
    await expect(mapping).to_have_count(1)
    await mapping.get_by_role("button", name="Confirm: delete mapping staff → member").click()
    await expect(page.locator("#mappings-empty")).to_be_visible()
    await row.get_by_role("button", name="Delete Corp staff login").click()
    await row.get_by_role("button", name="Confirm: delete Corp staff login").click()
    await expect(page.locator("#idps-empty")).to_be_visible()
    assert (await api_get(ui_app, token, "/api/v1/idps"))["data"] == []
    assert (await api_get(ui_app, token, "/api/v1/group-mappings"))["data"] == []
    # The browser logs the refused requests above; those refusals are what was tested.
    watched.allowed = ("422 (Unprocessable Entity)", "403 (Forbidden)")
    watched.assert_clean()


async def test_admin_edits_the_tool_policy_and_sees_validation_errors(
    ui_app: UiApp, fake: Any, open_page: Any
) -> None:
    tenant = await ui_app.tenant()
    admin = await ui_app.account(tenant, Role.ADMIN)
    watched = await open_page(375, 812)
    await watched.login(admin)
    page = await open_admin(watched)
    token = await session_token(page)
    await page.get_by_role("button", name="Dark theme").click()
    await expect(page.locator("#policy-version")).to_have_text("Built-in policy (version 0)")
    editor = page.locator("#policy").get_by_label("Policy document (JSON)")
    document = json.loads(await editor.input_value())

    bad = document | {"rules": [{"tools": ["send_email"], "decision": "maybe"}]}
    await editor.fill(json.dumps(bad))
    await page.get_by_role("button", name="Save policy").click()
    errors = page.locator("#policy-error")
    await expect(errors).to_contain_text("the request is not valid")
    await expect(errors.locator("li").first).to_contain_text("rules.0.decision")
    assert (await api_get(ui_app, token, "/api/v1/tool-policy"))["version"] == 0
    # The problem reads well on a phone too, and nothing scrolls sideways.
    assert await page.evaluate("document.documentElement.scrollWidth") <= 375
    await watched.screenshot("policy-error-375-dark")
    await page.locator("#policy").screenshot(path=ARTIFACTS / f"{watched.name}-policy-card.png")

    good = document | {
        "rules": [{"tools": ["send_email"], "roles": ["admin"], "decision": "allow"}]
    }
    await editor.fill(json.dumps(good))
    await page.get_by_role("button", name="Save policy").click()
    await expect(page.locator("#notice")).to_contain_text("saved as version 1")
    await expect(errors).to_be_hidden()
    stored = await api_get(ui_app, token, "/api/v1/tool-policy")
    assert stored["version"] == 1
    assert stored["document"]["rules"][0]["decision"] == "allow"
    watched.allowed = ("422 (Unprocessable",)
    watched.assert_clean()


async def test_an_auditor_reads_the_policy_but_cannot_change_it_or_see_idps(
    ui_app: UiApp, fake: Any, open_page: Any
) -> None:
    tenant = await ui_app.tenant()
    auditor = await ui_app.account(tenant, Role.AUDITOR)
    watched = await open_page()
    await watched.login(auditor)
    page = await open_admin(watched)

    await expect(page.locator("#federation")).to_be_hidden()
    editor = page.get_by_label("Policy document (JSON)")
    await expect(editor).to_have_attribute("readonly", "")
    await expect(page.get_by_role("button", name="Save policy")).to_be_hidden()

    # The page is not the control: forcing the form open, the API still refuses the change.
    await page.evaluate(
        """() => {
          document.getElementById("policy-doc").readOnly = false;
          document.getElementById("policy-form").requestSubmit();
        }"""
    )
    await expect(page.locator("#policy-error")).to_contain_text("tenant:tool_policy:manage")
    watched.allowed = ("403 (Forbidden)",)
    watched.assert_clean()
