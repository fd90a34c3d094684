"""Shared fixtures: real databases (SQLite and MariaDB), a loopback upstream, the app, factories.

With CI=true a test that needs a service fails when the service is missing; elsewhere it
skips and names the service.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest
from sqlalchemy import text

from obsigen.app import create_app
from obsigen.authz.permissions import Role
from obsigen.config import Settings
from obsigen.db.engine import make_engine, make_sessionmaker
from obsigen.db.migrate import upgrade_to_head
from obsigen.identity.apikeys import create_api_key
from obsigen.identity.tenants import create_tenant
from obsigen.services import Services, build_services
from tests.fakes.openai_upstream import FakeUpstream, serve_in_thread

CI = os.environ.get("CI", "").lower() == "true"
MARIADB_HOST, MARIADB_PORT = "127.0.0.1", 3306
MARIADB_SERVER_URL = f"mysql+asyncmy://root@{MARIADB_HOST}:{MARIADB_PORT}/"
REDIS_URL = "redis://127.0.0.1:6379/0"


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, available: bool) -> None:
    if available:
        return
    if CI:
        pytest.fail(f"{name} is required with CI=true but is not available")
    pytest.skip(f"{name} is not available")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect (rather than skip) SQLite runs of tests that only mean something on MariaDB."""
    keep, drop = [], []
    for item in items:
        is_sqlite = "[sqlite" in item.name or "-sqlite" in item.name
        (drop if item.get_closest_marker("mariadb_only") and is_sqlite else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


# --- databases -----------------------------------------------------------------------------


@pytest.fixture(scope="session", params=["sqlite", "mariadb"])
async def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """A freshly migrated database per backend, for the whole test session."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("sqlite") / "obsigen.db"
        url = f"sqlite+aiosqlite:///{path}"
        engine = make_engine(url)
        await upgrade_to_head(engine)
        await engine.dispose()
        yield url
        return
    require_service("MariaDB on 127.0.0.1:3306", port_open(MARIADB_HOST, MARIADB_PORT))
    name = f"obsigen_test_{uuid.uuid4().hex[:12]}"
    server = make_engine(MARIADB_SERVER_URL)
    async with server.begin() as conn:
        await conn.execute(text(f"CREATE DATABASE {name} CHARACTER SET utf8mb4"))
    url = f"{MARIADB_SERVER_URL}{name}?charset=utf8mb4"
    engine = make_engine(url)
    try:
        await upgrade_to_head(engine)
        await engine.dispose()
        yield url
    finally:
        async with server.begin() as conn:
            await conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        await server.dispose()


# --- the fake upstream ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def upstream_server() -> Iterator[tuple[FakeUpstream, str]]:
    fake = FakeUpstream()
    with serve_in_thread(fake) as base_url:
        yield fake, base_url


@pytest.fixture
def upstream(upstream_server: tuple[FakeUpstream, str]) -> FakeUpstream:
    """The session's fake upstream, reset to its defaults for each test."""
    fake, _ = upstream_server
    defaults = FakeUpstream()
    for name in defaults.__dataclass_fields__:
        setattr(fake, name, getattr(defaults, name))
    return fake


# --- the platform ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LoggedIn:
    tenant: str
    user_id: str
    email: str
    password: str
    totp_secret: str | None
    token: str
    refresh_token: str


@dataclass
class Platform:
    """The app wired to real stores, with an HTTP client and factories for tenants and keys."""

    settings: Settings
    services: Services
    client: httpx.AsyncClient
    upstream: FakeUpstream
    _keys: dict[str, str] = field(default_factory=dict)

    async def tenant(self, prefix: str = "t") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        async with self.services.sessions.begin() as session:
            await create_tenant(session, name)
        return name

    async def api_key(self, tenant: str | None = None, role: Role = Role.MEMBER) -> str:
        from obsigen.identity.tenants import tenant_by_name

        tenant = tenant or await self.tenant()
        async with self.services.sessions.begin() as session:
            created = await create_api_key(
                session, await tenant_by_name(session, tenant), "test", role, None
            )
        return created.key

    async def login(
        self, tenant: str | None = None, role: Role = Role.MEMBER, *, mfa: bool | None = None
    ) -> LoggedIn:
        """A real user of ``role`` logged in through ``POST /auth/login``.

        Roles with administrative permissions get TOTP and log in with it (their tokens carry
        MFA); pass ``mfa=False`` for a password-only session of such a user.
        """
        from obsigen.identity.tenants import tenant_by_name
        from obsigen.identity.users import create_user

        tenant = tenant or await self.tenant()
        email = f"u-{uuid.uuid4().hex[:10]}@example.eu"
        password = secrets.token_urlsafe(18)
        async with self.services.sessions.begin() as session:
            created = await create_user(
                session, await tenant_by_name(session, tenant), email, role, password
            )
            totp_secret = created.user.totp_secret
            user_id = created.user.id
        body: dict[str, str] = {"tenant": tenant, "email": email, "password": password}
        if totp_secret and mfa is not False:
            body["totp"] = pyotp.TOTP(totp_secret).now()
        response = await self.client.post("/auth/login", json=body)
        if totp_secret and mfa is False:
            # The account has TOTP, so a password-only login is refused; make the session
            # directly, as a login before enrolment would have.
            assert response.status_code == 401, response.text
            auth = self.services.auth
            record, refresh = await auth.manager.start(
                tenant_id=created.user.tenant_id, user_id=user_id, amr=["pwd"]
            )
            token, _ = await auth.tokens.issue(
                subject=user_id,
                tenant_id=record.tenant_id,
                session_id=record.session_id,
                amr=record.amr,
                auth_time=record.auth_time,
                session_expires_at=record.expires_at,
            )
            return LoggedIn(tenant, user_id, email, password, totp_secret, token, refresh)
        assert response.status_code == 200, response.text
        tokens = response.json()
        return LoggedIn(
            tenant,
            user_id,
            email,
            password,
            totp_secret,
            tokens["access_token"],
            tokens["refresh_token"],
        )

    async def user_token(self, tenant: str | None = None, role: Role = Role.MEMBER) -> str:
        return (await self.login(tenant, role)).token

    @staticmethod
    def auth(key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    async def chat(self, key: str, content: str = "Hello", **body: Any) -> httpx.Response:
        payload = {"model": "fake-model", "messages": [{"role": "user", "content": content}]}
        payload.update(body)
        return await self.client.post("/v1/chat/completions", json=payload, headers=self.auth(key))


def platform_settings(data_dir: Path, database_url: str, upstream_url: str) -> Settings:
    return Settings.model_validate(
        {
            "paths": {"data_dir": data_dir},
            "storage": {"database_url": database_url},
            "inference": {
                "provider": "openai",
                "base_url": upstream_url,
                "region": "de",
                "max_retries": 1,
                "timeout_s": 10,
            },
        }
    )


@contextlib.asynccontextmanager
async def running_platform(settings: Settings, upstream: FakeUpstream) -> AsyncIterator[Platform]:
    """The app on ``settings``, started, with a client; for fixtures that change settings."""
    services = build_services(settings)
    app = create_app(settings, services)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Platform(settings, services, client, upstream)
    await services.aclose()


@pytest.fixture
async def platform(
    database_url: str,
    upstream_server: tuple[FakeUpstream, str],
    upstream: FakeUpstream,
    tmp_path: Path,
) -> AsyncIterator[Platform]:
    settings = platform_settings(tmp_path / "var", database_url, upstream_server[1])
    async with running_platform(settings, upstream) as running:
        yield running


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[Any]:
    engine = make_engine(database_url)
    yield make_sessionmaker(engine)
    await engine.dispose()
