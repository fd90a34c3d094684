"""``/ui``: the page shells, their static files, and Markdown rendering for the chat.

Pages carry no data: each is a shell whose JS module calls the JSON APIs with the session's
bearer token, so they are public, and everything they show is authorised by the API route that
returned it. Static files come only from this package's ``static/`` folder, by name.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import BaseModel, ConfigDict, Field

from obsigen import __version__
from obsigen.authz.permissions import Permission
from obsigen.authz.principal import Principal
from obsigen.errors import InvalidInput, NotFound
from obsigen.web.auth import public, require
from obsigen.web.ui.markdown import render_markdown

router = APIRouter(prefix="/ui", tags=["ui"])

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
}
# Names only (one folder level for vendor/...): no "..", no absolute paths, no odd characters.
_STATIC_NAME = re.compile(r"^(?:[a-z0-9-]+/)?[a-z0-9][a-z0-9._-]{0,80}$")
MAX_MARKDOWN_CHARS = 200_000
MAX_MARKDOWN_ITEMS = 200

Page = Literal["login", "chat", "admin", "sso_complete"]
_TITLES: dict[Page, str] = {
    "login": "Sign in",
    "chat": "Chat",
    "admin": "Administration",
    "sso_complete": "Signing in",
}

_templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _page(page: Page) -> HTMLResponse:
    html = _templates.get_template(f"{page}.html").render(
        page=page, title=_TITLES[page], version=__version__
    )
    return HTMLResponse(html)


@router.get("", dependencies=[public()], include_in_schema=False)
async def ui_root() -> RedirectResponse:
    return RedirectResponse("/ui/chat", status_code=303)


@router.get("/login", dependencies=[public()], include_in_schema=False)
async def login_page() -> HTMLResponse:
    return _page("login")


@router.get("/chat", dependencies=[public()], include_in_schema=False)
async def chat_page() -> HTMLResponse:
    return _page("chat")


@router.get("/admin", dependencies=[public()], include_in_schema=False)
async def admin_page() -> HTMLResponse:
    return _page("admin")


@router.get("/sso/complete", dependencies=[public()], include_in_schema=False)
async def sso_complete_page() -> HTMLResponse:
    # The one-time code is in the fragment: it never reaches this route, its logs or a Referer.
    return _page("sso_complete")


@router.get("/static/{name:path}", dependencies=[public()], include_in_schema=False)
async def static_file(name: str) -> Response:
    path = STATIC_DIR / name
    media_type = MEDIA_TYPES.get(path.suffix)
    if not _STATIC_NAME.match(name) or media_type is None or not path.is_file():
        raise NotFound("no such file")
    return Response(path.read_bytes(), media_type=media_type)


class MarkdownIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    texts: list[str] = Field(max_length=MAX_MARKDOWN_ITEMS)


class MarkdownOut(BaseModel):
    html: list[str]


@router.post("/api/markdown")
async def markdown(
    body: MarkdownIn,
    principal: Principal = require(Permission.CONVERSATIONS_READ),
) -> MarkdownOut:
    """Sanitised HTML for each text; the browser inserts only what this returns."""
    if sum(len(t) for t in body.texts) > MAX_MARKDOWN_CHARS:
        raise InvalidInput(f"at most {MAX_MARKDOWN_CHARS} characters per request")
    return MarkdownOut(html=[render_markdown(text) for text in body.texts])
