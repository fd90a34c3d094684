"""A real OpenID provider (npm ``oidc-provider``) on loopback, and a browser stand-in that
drives its login and consent pages with httpx.

Signing keys and the client secret are generated when the provider starts; nothing secret is
stored in the repository.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
from joserfc.jwk import RSAKey

PROVIDER_DIR = Path(__file__).parent / "oidc_provider"
CLIENT_ID = "obsigen"
PUBLIC_CLIENT_ID = "obsigen-public"
CLIENT_AUTH_ENV = "OBSIGEN_TEST_OIDC_CLIENT_AUTH"


def provider_available() -> bool:
    return shutil.which("node") is not None and (PROVIDER_DIR / "node_modules").is_dir()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def private_jwks(kid: str) -> dict[str, Any]:
    key = RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"})
    return {"keys": [key.as_dict(private=True)]}


@dataclass
class OidcIdp:
    """One running provider. ``accounts`` is re-read by the provider at every login."""

    workdir: Path
    redirect_prefix: str
    client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    port: int = field(default_factory=free_port)
    jwks: dict[str, Any] = field(default_factory=lambda: private_jwks("k1"))
    ttl: dict[str, int] = field(default_factory=dict)
    accounts: dict[str, Any] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def accounts_file(self) -> Path:
        return self.workdir / "accounts.json"

    def set_account(
        self,
        account_id: str,
        *,
        email: str,
        groups: list[str] | None = None,
        amr: list[str] | None = None,
        email_verified: bool = True,
    ) -> None:
        self.accounts[account_id] = {
            "claims": {
                "email": email,
                "email_verified": email_verified,
                "name": f"User {account_id}",
                "groups": groups or [],
            },
            "amr": amr or ["pwd"],
        }
        self.accounts_file.write_text(json.dumps(self.accounts))

    def start(self) -> None:
        self.accounts_file.write_text(json.dumps(self.accounts))
        config = {
            "port": self.port,
            "issuer": self.issuer,
            "redirectPrefix": self.redirect_prefix,
            "accountsFile": str(self.accounts_file),
            "jwks": self.jwks,
            "ttl": self.ttl,
            "clients": [
                {
                    "client_id": CLIENT_ID,
                    "client_secret": self.client_secret,
                    "redirect_uris": [f"{self.redirect_prefix}x/callback"],
                    "token_endpoint_auth_method": "client_secret_basic",
                },
                {
                    "client_id": PUBLIC_CLIENT_ID,
                    "redirect_uris": [f"{self.redirect_prefix}x/callback"],
                    "token_endpoint_auth_method": "none",
                },
            ],
        }
        env = {**os.environ, "OIDC_PROVIDER_CONFIG": json.dumps(config)}
        log = self.workdir / f"provider-{self.port}.log"
        with log.open("w") as out:
            self.process = subprocess.Popen(
                ["node", str(PROVIDER_DIR / "provider.mjs")],
                cwd=PROVIDER_DIR,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 15
        # Warnings (e.g. "use Node 22") may come before "ready".
        while "ready" not in log.read_text().splitlines():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"oidc-provider did not start: {log.read_text()}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        self.process = None

    def restart(self, jwks: dict[str, Any]) -> None:
        """The same issuer with other signing keys: a key rollover."""
        self.stop()
        self.jwks = jwks
        deadline = time.monotonic() + 5
        while True:  # the port may linger for a moment after the old process exits
            try:
                self.start()
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
            else:
                return

    def jwks_hits(self) -> int:
        hits: int = httpx.get(f"{self.issuer}/test/stats").json()["jwks"]
        return hits


@contextlib.contextmanager
def running_idp(workdir: Path, redirect_prefix: str, **kwargs: Any) -> Iterator[OidcIdp]:
    idp = OidcIdp(workdir=workdir, redirect_prefix=redirect_prefix, **kwargs)
    idp.start()
    try:
        yield idp
    finally:
        idp.stop()


async def authorize(authorization_url: str, account_id: str, redirect_prefix: str) -> str:
    """Plays the browser at the IdP: follows redirects by hand, posts the login and consent
    forms, and stops at our redirect URI. Returns that URL's path and query."""
    url = authorization_url
    async with httpx.AsyncClient(follow_redirects=False, timeout=10) as browser:
        for _ in range(12):
            if url.startswith(redirect_prefix):
                parts = urlsplit(url)
                return f"{parts.path}?{parts.query}"
            response = await browser.get(url)
            if response.status_code in {302, 303}:
                url = urljoin(url, response.headers["location"])
                continue
            assert response.status_code == 200, response.text
            page = response.json()
            form = {"login": account_id} if page["prompt"] == "login" else {}
            posted = await browser.post(f"{url}/{page['prompt']}", data=form)
            assert posted.status_code in {302, 303}, posted.text
            url = urljoin(url, posted.headers["location"])
    raise AssertionError(f"the IdP never sent the browser back to {redirect_prefix}")
