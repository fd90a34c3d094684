"""The pysaml2 test IdP (``tests.integration.federation.saml_idp``) behind a loopback web
server, so that a real browser can sign in through it: the HTTP-Redirect AuthnRequest arrives
at ``/sso``, the user types a username into a plain form, and the signed response goes back
to our ACS as an HTTP-POST form the user submits (a button: no script, as a strict CSP test
watch wants)."""

from __future__ import annotations

import html
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from saml2 import BINDING_HTTP_REDIRECT
from saml2.config import IdPConfig

from tests.integration.federation.saml_idp import KeyPair, TestIdp, encode


class BrowserIdp(TestIdp):
    """The test IdP with its single sign-on service at a loopback URL."""

    __test__ = False

    def __init__(self, signer: KeyPair, sso_url: str) -> None:
        self.sso_url = sso_url
        super().__init__(signer)

    def _config(self, sp_metadata: str | None) -> IdPConfig:
        config = super()._config(sp_metadata)
        # pysaml2 reads a loaded config's endpoints from this attribute (metadata included).
        config._idp_endpoints = {"single_sign_on_service": [(self.sso_url, BINDING_HTTP_REDIRECT)]}
        return config


@dataclass
class WebIdp:
    idp: BrowserIdp
    sp_entity_id: str = ""
    acs_url: str = ""
    # username -> (e-mail, groups)
    users: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)


def _page(title: str, body: str) -> bytes:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<link rel="icon" href="data:,"><title>{html.escape(title)}</title></head>'
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    ).encode()


def _hidden(name: str, value: str) -> str:
    return f'<input type="hidden" name="{name}" value="{html.escape(value, quote=True)}">'


def _handler(state: WebIdp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return None

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            if parts.path != "/sso" or "SAMLRequest" not in query:
                self._send(404, _page("Not found", ""))
                return
            # Parsed now so that a broken request fails here, visibly, not at the ACS.
            state.idp.server.parse_authn_request(query["SAMLRequest"], BINDING_HTTP_REDIRECT)
            form = (
                '<form method="post" action="/sso/login">'
                '<label for="login">Username</label> '
                '<input id="login" name="login" autocomplete="username">'
                + _hidden("SAMLRequest", query["SAMLRequest"])
                + _hidden("RelayState", query.get("RelayState", ""))
                + '<button type="submit">Sign in</button></form>'
            )
            self._send(200, _page("Test SAML IdP: sign in", form))

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            user = state.users.get(form.get("login", ""))
            if self.path != "/sso/login" or user is None:
                self._send(400, _page("Unknown user", ""))
                return
            request = state.idp.server.parse_authn_request(
                form["SAMLRequest"], BINDING_HTTP_REDIRECT
            )
            xml = state.idp.response(
                sp_entity_id=state.sp_entity_id,
                acs_url=state.acs_url,
                in_response_to=str(request.message.id),
                name_id=f"saml-{form['login']}",
                email=user[0],
                groups=user[1],
            )
            relay = form.get("RelayState", "")
            answer = (
                f'<form method="post" action="{html.escape(state.acs_url, quote=True)}">'
                + _hidden("SAMLResponse", encode(xml))
                + (_hidden("RelayState", relay) if relay else "")
                + '<button type="submit">Continue to Obsigen</button></form>'
            )
            self._send(200, _page("Test SAML IdP: signed in", answer))

    return Handler


@contextmanager
def running_web_idp(signer: KeyPair) -> Iterator[WebIdp]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = server.server_address[1]
    state = WebIdp(BrowserIdp(signer, f"http://127.0.0.1:{port}/sso"))
    server.RequestHandlerClass = _handler(state)
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="saml-web-idp")
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
