"""The Must-show flows in a real browser: Debian's chromium driven by Playwright against the
app on a loopback port, with no console errors and no CSP violations on any page."""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any

import pytest
from playwright.async_api import expect

from obsigen.authz.permissions import Role
from obsigen.sandbox.detect import detect
from tests.conftest import require_service
from tests.fakes.openai_upstream import FakeReply, FakeToolCall
from tests.ui.conftest import ARTIFACTS, UiApp


async def test_member_logs_in_and_sees_a_streamed_markdown_answer(
    ui_app: UiApp, fake: Any, open_page: Any
) -> None:
    tenant = await ui_app.tenant()
    member = await ui_app.account(tenant, Role.MEMBER)
    fake.answer = "Here is **the plan** with `code` and a list:\n\n- one\n- two"
    fake.chunk_delay_s = 0.03
    watched = await open_page()
    page = watched.page

    await watched.login(member)
    await page.get_by_label("Message", exact=True).fill("What is the plan?")
    await page.keyboard.press("Control+Enter")

    answer = page.locator(".msg.assistant").last
    await expect(answer.locator("strong")).to_have_text("the plan")
    await expect(answer.locator("li")).to_have_count(2)
    # Arrived in pieces as the model produced it (the server may group words), not as one body.
    assert int(await answer.get_attribute("data-streamed-chunks") or "0") >= 2
    await expect(page.locator("#conversation-list button.conv")).to_have_count(1)
    await watched.screenshot("chat-1440")
    watched.assert_clean()


async def test_model_output_is_sanitised_before_it_reaches_the_page(
    ui_app: UiApp, fake: Any, open_page: Any
) -> None:
    tenant = await ui_app.tenant()
    member = await ui_app.account(tenant, Role.MEMBER)
    fake.answer = (
        "<img src=x onerror=window.pwned=1> <script>window.pwned=2</script> "
        "[click](javascript:window.pwned=3) [docs](https://example.eu/doc)"
    )
    watched = await open_page()
    page = watched.page
    await watched.login(member)

    await page.get_by_label("Message", exact=True).fill("Say something nasty")
    await page.get_by_role("button", name="Send").click()

    answer = page.locator(".msg.assistant").last
    await expect(answer.get_by_role("link", name="docs")).to_have_attribute(
        "href", "https://example.eu/doc"
    )
    await expect(answer.locator("img, script")).to_have_count(0)
    await expect(answer.get_by_role("link", name="click")).to_have_count(0)
    assert await page.evaluate("window.pwned") is None
    await expect(answer).to_contain_text("<script>")  # shown as text, not run
    watched.assert_clean()


async def test_upload_a_file_then_ask_about_it(ui_app: UiApp, fake: Any, open_page: Any) -> None:
    tenant = await ui_app.tenant()
    member = await ui_app.account(tenant, Role.MEMBER)
    watched = await open_page()
    page = watched.page
    await watched.login(member)

    await page.get_by_label("Upload a file for the assistant to search").set_input_files(
        files=[
            {
                "name": "notes.txt",
                "mimeType": "text/plain",
                "buffer": b"Project notes. The launch code word is heliotrope. Budget: 40k.\n",
            }
        ]
    )
    await page.get_by_role("button", name="Upload", exact=True).click()
    message = page.locator("#upload-message")
    await expect(message).to_have_attribute("data-state", "done", timeout=30_000)
    await expect(message).to_contain_text("indexed")
    assert await page.locator("#upload-progress").get_attribute("value") == "100"

    fake.script = [
        FakeReply(tool_calls=[FakeToolCall("search_files", {"query": "launch code word"})]),
        FakeReply(answer="The code word is **heliotrope** [1]."),
    ]
    await page.get_by_label("Message", exact=True).fill("What is the code word in my notes?")
    await page.get_by_role("button", name="Send").click()

    card = page.locator("details.tool-call[data-tool='search_files']")
    await expect(card.locator("summary")).to_contain_text("search_files: ok (policy: allow)")
    await expect(card).to_contain_text("launch code word")  # what it ran with
    await expect(card).to_contain_text("heliotrope")  # the outcome: the excerpt found
    await expect(page.locator(".msg.assistant strong").last).to_have_text("heliotrope")
    tool_message = fake.chat_requests[-1].body["messages"][-1]
    assert "heliotrope" in tool_message["content"]
    await watched.screenshot("upload-and-ask")
    watched.assert_clean()


def _png(width: int = 4, height: int = 3) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    rows = b"".join(b"\x00" + b"\xd0\x30\x30" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


async def test_run_code_and_download_the_artifact(ui_app: UiApp, fake: Any, open_page: Any) -> None:
    require_service("a sandbox backend (gVisor or bubblewrap)", detect().backend is not None)
    tenant = await ui_app.tenant()
    member = await ui_app.account(tenant, Role.MEMBER)
    png = _png()
    watched = await open_page()
    page = watched.page
    await watched.login(member)

    code = f"open('/output/chart.png', 'wb').write({png!r})\nprint(6 * 7)\n"
    await page.get_by_label("Code (files written to /output become artifacts)").fill(code)
    await page.get_by_role("button", name="Run", exact=True).click()

    await expect(page.locator("#code-stdout")).to_have_text("42", timeout=60_000)
    await expect(page.locator("#code-exit")).to_contain_text("Exit code 0")
    preview = page.get_by_role("img", name="Preview of chart.png")
    await expect(preview).to_be_visible()
    assert await preview.evaluate("img => img.naturalWidth") == 4
    async with page.expect_download() as info:
        await page.get_by_role("button", name="Download chart.png").click()
    download = await info.value
    assert download.suggested_filename == "chart.png"
    saved = watched.name + "-chart.png"
    await download.save_as(ARTIFACTS / saved)
    assert (ARTIFACTS / saved).read_bytes() == png
    await watched.screenshot("code-run")
    watched.assert_clean()


async def test_admin_approves_a_pending_tool_call(ui_app: UiApp, fake: Any, open_page: Any) -> None:
    tenant = await ui_app.tenant()
    member = await ui_app.account(tenant, Role.MEMBER)
    admin = await ui_app.account(tenant, Role.ADMIN)
    before = len(ui_app.send_email.runs)
    fake.script = [
        FakeReply(tool_calls=[FakeToolCall("send_email", {"to": "ana@example.eu"})]),
        FakeReply(answer="Your e-mail waits for approval."),
    ]
    asker = await open_page()
    await asker.login(member)
    await asker.page.get_by_label("Message", exact=True).fill("Send the report to Ana")
    await asker.page.get_by_role("button", name="Send").click()
    card = asker.page.locator("details.tool-call[data-tool='send_email']")
    await expect(card.locator("summary")).to_contain_text("approval")
    assert len(ui_app.send_email.runs) == before

    approver = await open_page()
    await approver.login(admin)
    await approver.goto("/ui/admin")
    await approver.page.wait_for_selector("body[data-ready='true']")
    row = approver.page.locator("#approvals-body tr")
    await expect(row).to_have_count(1)
    await expect(row).to_contain_text("ana@example.eu")
    await approver.screenshot("approvals-pending")
    await row.get_by_role("button", name="Approve send_email").click()

    await expect(approver.page.locator("#notice")).to_contain_text("send_email: approved")
    await expect(approver.page.locator("#approvals-empty")).to_be_visible()
    assert ui_app.send_email.runs[before:] == [{"to": "ana@example.eu"}]
    await asker.page.reload()
    await asker.page.wait_for_selector("body[data-ready='true']")
    await asker.page.locator("#conversation-list button.conv").first.click()
    await expect(card.locator("summary")).to_contain_text("send_email: ok (policy: approved)")
    await approver.screenshot("approvals-decided")
    asker.assert_clean()
    approver.assert_clean()


async def test_auditor_searches_and_exports_the_audit_log(
    ui_app: UiApp, fake: Any, open_page: Any
) -> None:
    tenant = await ui_app.tenant()
    auditor = await ui_app.account(tenant, Role.AUDITOR)
    watched = await open_page()
    page = watched.page
    await watched.login(auditor)
    await expect(page.get_by_role("link", name="Admin")).to_be_visible()
    await page.get_by_role("link", name="Admin").click()
    await page.wait_for_selector("body[data-ready='true']")
    # An auditor reads the trail but decides nothing.
    await expect(page.locator("#approvals")).to_be_hidden()

    await page.get_by_label("Event type").fill("auth.login")
    await page.get_by_label("Outcome").select_option("success")
    await page.get_by_role("button", name="Search").click()

    rows = page.locator("#audit-body tr")
    await expect(rows.first).to_contain_text("auth.login")
    types = await rows.locator("td:nth-child(3)").all_inner_texts()
    assert types
    assert set(types) == {"auth.login"}
    async with page.expect_download() as info:
        await page.get_by_role("button", name="Export JSON").click()
    exported = json.loads((await (await info.value).path()).read_text())
    assert exported["filters"]["type"] == "auth.login"
    assert {e["type"] for e in exported["events"]} == {"auth.login"}
    await watched.screenshot("audit-search")
    watched.assert_clean()


async def test_small_screen_and_dark_theme(ui_app: UiApp, fake: Any, open_page: Any) -> None:
    tenant = await ui_app.tenant()
    member = await ui_app.account(tenant, Role.MEMBER)
    watched = await open_page(375, 812)
    page = watched.page
    await watched.login(member)

    await page.get_by_role("button", name="Dark theme").click()
    assert await page.evaluate("document.documentElement.dataset.theme") == "dark"
    await expect(page.get_by_role("button", name="Light theme")).to_have_attribute(
        "aria-pressed", "true"
    )
    # Nothing wider than the screen: no sideways scrolling at 375 px.
    assert await page.evaluate("document.documentElement.scrollWidth") <= 375
    await watched.screenshot("chat-375-dark")
    watched.assert_clean()


async def test_keyboard_only_login(ui_app: UiApp, fake: Any, open_page: Any) -> None:
    tenant = await ui_app.tenant()
    member = await ui_app.account(tenant, Role.MEMBER)
    watched = await open_page()
    page = watched.page
    await watched.goto("/ui/login")

    # Focus starts in the first field; Tab walks the form in reading order.
    await page.keyboard.type(tenant)
    await page.keyboard.press("Tab")
    await page.keyboard.type(member.email)
    await page.keyboard.press("Tab")
    await page.keyboard.type(member.password)
    await page.keyboard.press("Enter")

    await page.wait_for_url("**/ui/chat")
    await page.wait_for_selector("body[data-ready='true']")
    await expect(page.get_by_label("Message", exact=True)).to_be_visible()
    watched.assert_clean()


async def test_expired_session_returns_to_login_with_a_notice(
    ui_app: UiApp, fake: Any, open_page: Any
) -> None:
    watched = await open_page()
    page = watched.page
    await watched.goto("/ui/login")
    stale = {"access_token": "eyJ.bad.token", "refresh_token": None, "mfa": False}
    await page.evaluate("s => sessionStorage.setItem('obsigen.session', JSON.stringify(s))", stale)

    await watched.goto("/ui/chat")

    await page.wait_for_url("**/ui/login?*expired=1")
    await expect(page.get_by_text("Your session expired")).to_be_visible()
    # The browser itself logs the refused /auth/me; that 401 is the point of this test.
    watched.allowed = ("401 (Unauthorized)",)
    watched.assert_clean()


async def test_wrong_password_is_reported_without_leaving_the_page(
    ui_app: UiApp, fake: Any, open_page: Any
) -> None:
    tenant = await ui_app.tenant()
    member = await ui_app.account(tenant, Role.MEMBER)
    watched = await open_page()
    page = watched.page
    await watched.goto("/ui/login")
    await page.get_by_label("Organisation").fill(tenant)
    await page.get_by_label("E-mail").fill(member.email)
    await page.get_by_label("Password").fill(member.password[::-1])
    await page.get_by_role("button", name="Sign in").click()

    await expect(page.get_by_role("alert")).to_be_visible()
    assert page.url.endswith("/ui/login")
    assert await page.evaluate("sessionStorage.getItem('obsigen.session')") is None
    watched.allowed = ("401 (Unauthorized)",)
    watched.assert_clean()


async def test_the_watch_catches_csp_violations_and_script_errors(
    ui_app: UiApp, fake: Any, open_page: Any
) -> None:
    """The clean-run assertions above mean something: an inline style and an inline script
    are refused by the CSP, and the watch records both, plus the script error."""
    watched = await open_page()
    page = watched.page
    await watched.goto("/ui/login")

    await page.evaluate(
        """() => {
          document.body.insertAdjacentHTML("beforeend", '<p style="color: red">x</p>');
          const s = document.createElement("script");
          s.textContent = "window.inlineRan = true";
          document.body.append(s);
          setTimeout(() => { throw new Error("boom"); });
        }"""
    )
    await page.wait_for_timeout(300)

    assert await page.evaluate("window.inlineRan") is None
    directives = " ".join(watched.csp_violations)
    assert "style-src" in directives
    assert "script-src" in directives
    assert any("boom" in e for e in watched.console_errors)
    with pytest.raises(AssertionError):
        watched.assert_clean()
