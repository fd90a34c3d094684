"""Which SSO callers get the browser hand-off (303 + one-time code) and which keep JSON."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from obsigen.web.sso import prefers_html

CHROME = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
    "image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"
)
FIREFOX = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def request(accept: str | None) -> Request:
    headers = [] if accept is None else [(b"accept", accept.encode())]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers})


@pytest.mark.parametrize("accept", [CHROME, FIREFOX, "text/html", "text/*", "text/html;q=0.5"])
def test_browsers_are_handed_off(accept: str) -> None:
    assert prefers_html(request(accept))


@pytest.mark.parametrize(
    "accept",
    [
        None,
        "",
        "*/*",
        "application/json",
        "application/json, text/html",
        "text/html;q=0.5, application/json",
        "text/html;q=0, */*",
        "text/html;q=nan",
        "text/html;q=2",
        "text/html;q=junk",
        "application/*, text/html;q=0.9",
        ",,;;==",
    ],
)
def test_api_clients_keep_the_json_answer(accept: str | None) -> None:
    assert not prefers_html(request(accept))
