"""Single sign-on in the browser, end to end: the login page's SSO button, the IdP's own login
form (the real npm oidc-provider; the pysaml2 IdP behind a loopback web server), our callback
or ACS, the one-time code trade on /ui/sso/complete, and the chat page, signed in."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from playwright.async_api import Response, expect

from obsigen.authz.permissions import Role
from obsigen.config import Settings
from tests.conftest import require_service
from tests.fakes.openai_upstream import FakeUpstream
from tests.integration.federation.oidc_idp import (
    CLIENT_AUTH_ENV,
    CLIENT_ID,
    OidcIdp,
    provider_available,
    running_idp,
)
from tests.integration.federation.saml_idp import SamlKeys, saml_idp_body, saml_keys
from tests.ui.apps import api_token, ui_app_at
from tests.ui.conftest import UiApp, Watched
from tests.ui.saml_web_idp import WebIdp, running_web_idp

__all__ = ["saml_keys"]


@pytest.fixture(scope="module")
async def ui_app(
    tmp_path_factory: pytest.TempPathFactory, upstream_server: tuple[FakeUpstream, str]
) -> AsyncIterator[UiApp]:
    """The UI app whose public URL (callbacks, ACS, SP entity id) is where the browser finds it."""

    def configure(settings: Settings, base_url: str) -> None:
        settings.federation = settings.federation.model_copy(update={"public_url": base_url})

    directory = tmp_path_factory.mktemp("ui-sso")
    async with ui_app_at(directory, upstream_server, configure=configure) as app:
        yield app


@pytest.fixture(scope="module")
def oidc(ui_app: UiApp, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcIdp]:
    require_service(
        "node with oidc-provider (npm ci --prefix tests/integration/federation/oidc_provider)",
        provider_available(),
    )
    prefix = f"{ui_app.base_url}/auth/oidc/"
    with running_idp(tmp_path_factory.mktemp("ui-oidc"), prefix) as idp:
        previous = os.environ.get(CLIENT_AUTH_ENV)
        os.environ[CLIENT_AUTH_ENV] = idp.client_secret
        try:
            yield idp
        finally:
            if previous is None:
                os.environ.pop(CLIENT_AUTH_ENV, None)
            else:
                os.environ[CLIENT_AUTH_ENV] = previous


async def admin_api(ui_app: UiApp, tenant: str) -> httpx.AsyncClient:
    token = await api_token(ui_app.base_url, await ui_app.account(tenant, Role.ADMIN))
    return httpx.AsyncClient(
        base_url=ui_app.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


async def add_idp(client: httpx.AsyncClient, body: dict[str, Any], group: str) -> str:
    created = await client.post("/api/v1/idps", json=body)
    assert created.status_code == 201, created.text
    idp_id: str = created.json()["id"]
    mapped = await client.post(
        "/api/v1/group-mappings", json={"source": f"idp:{idp_id}", "group": group, "role": "member"}
    )
    assert mapped.status_code == 201, mapped.text
    return idp_id


async def start_sso(watched: Watched, tenant: str, email: str, button: str) -> None:
    page = watched.page
    await watched.goto("/ui/login")
    await page.get_by_label("Organisation").fill(tenant)
    await page.get_by_label("E-mail").fill(email)
    await page.get_by_label("E-mail").press("Tab")  # "change": the page asks for SSO buttons
    await expect(page.get_by_role("heading", name="Or use single sign-on")).to_be_visible()
    await page.get_by_role("link", name=button).click()


async def assert_signed_in_to_chat(watched: Watched) -> None:
    page = watched.page
    await page.wait_for_url("**/ui/chat")
    await page.wait_for_selector("body[data-ready='true']")
    await expect(page.get_by_label("Message", exact=True)).to_be_visible()
    await expect(page.locator("#whoami")).to_have_text("member")
    stored = await page.evaluate("JSON.parse(sessionStorage.getItem('obsigen.session'))")
    assert stored["access_token"]
    assert stored["refresh_token"]
    # /ui/sso/complete replaced itself (and its code) in the history with the chat page.
    assert "code=" not in page.url


async def test_sign_in_through_the_oidc_providers_login_form(
    ui_app: UiApp, fake: Any, oidc: OidcIdp, open_page: Any
) -> None:
    tenant = await ui_app.tenant()
    async with await admin_api(ui_app, tenant) as client:
        body = {
            "slug": "corp",
            "protocol": "oidc",
            "display_name": "Corp login",
            "domains": ["oidc.example.eu"],
            "jit_provisioning": True,
            "config": {
                "issuer": oidc.issuer,
                "client_id": CLIENT_ID,
                "client_secret": f"env:{CLIENT_AUTH_ENV}",
            },
        }
        await add_idp(client, body, "staff")
    account = f"a{uuid.uuid4().hex[:10]}"
    oidc.set_account(account, email=f"{account}@oidc.example.eu", groups=["staff"])
    watched = await open_page()
    page = watched.page
    handoffs: list[str] = []

    async def on_response(response: Response) -> None:
        if "/callback" in response.url and response.status == 303:
            handoffs.append(await response.header_value("location") or "")

    page.on("response", on_response)

    await start_sso(watched, tenant, f"{account}@oidc.example.eu", "Sign in with Corp login")
    # The IdP's own pages: its login form, then its consent form.
    await page.get_by_label("Username").fill(account)
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("button", name="Allow").click()

    await assert_signed_in_to_chat(watched)
    await watched.screenshot("sso-oidc-chat")
    watched.assert_clean()

    # The same hand-off URL again, in the same browser: the code was spent.
    assert len(handoffs) == 1
    assert handoffs[0].startswith("/ui/sso/complete#code=")
    await watched.goto(handoffs[0])
    await expect(page.get_by_role("alert")).to_contain_text("not valid")
    watched.allowed = ("400 (Bad Request)",)
    watched.assert_clean()


async def test_sign_in_through_the_saml_idp(
    ui_app: UiApp, fake: Any, saml_keys: SamlKeys, open_page: Any
) -> None:
    tenant = await ui_app.tenant()
    with running_web_idp(saml_keys.idp) as web:
        async with await admin_api(ui_app, tenant) as client:
            body = saml_idp_body(web.idp, [saml_keys.idp.sha256])
            idp_id = await add_idp(client, body, "engineering")
            metadata = await client.get(f"/auth/saml/{idp_id}/metadata")
            assert metadata.status_code == 200, metadata.text
        trust(web, ui_app.base_url, idp_id, metadata.text)
        web.users["alice"] = ("alice@corp.example.eu", ("engineering",))
        watched = await open_page()
        page = watched.page

        await start_sso(watched, tenant, "alice@corp.example.eu", "Sign in with Corp SAML")
        await page.get_by_label("Username").fill("alice")
        await page.get_by_role("button", name="Sign in").click()
        await page.get_by_role("button", name="Continue to Obsigen").click()

        await assert_signed_in_to_chat(watched)
    await watched.screenshot("sso-saml-chat")
    watched.assert_clean()


def trust(web: WebIdp, base_url: str, idp_id: str, sp_metadata: str) -> None:
    web.idp.trust_sp(sp_metadata)
    web.sp_entity_id = f"{base_url}/auth/saml/{idp_id}/metadata"
    web.acs_url = f"{base_url}/auth/saml/{idp_id}/acs"


async def test_a_made_up_code_is_refused_on_the_page(
    ui_app: UiApp, fake: Any, oidc: OidcIdp, open_page: Any
) -> None:
    tenant = await ui_app.tenant()
    watched = await open_page(375, 812)
    page = watched.page

    await watched.goto(f"/ui/sso/complete#code={'A' * 43}&tenant={tenant}")

    await expect(page.get_by_role("alert")).to_contain_text("not valid")
    await expect(page.get_by_role("link", name="Back to the sign-in page")).to_be_visible()
    assert "code=" not in page.url
    assert await page.evaluate("sessionStorage.getItem('obsigen.session')") is None
    assert await page.evaluate("document.documentElement.scrollWidth") <= 375
    await watched.screenshot("sso-refused-375")
    watched.allowed = ("400 (Bad Request)",)
    watched.assert_clean()


async def test_the_page_without_a_code_explains_itself(
    ui_app: UiApp, fake: Any, open_page: Any
) -> None:
    watched = await open_page()
    await watched.goto("/ui/sso/complete")

    await expect(watched.page.get_by_role("alert")).to_contain_text("started from the sign-in")
    watched.assert_clean()
