"""Database and Redis passwords: refused inside the URLs, taken from references instead and read
at each new connection (a real MariaDB user and a private password-protected redis-server)."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import AuthenticationError, ResponseError
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from tests.conftest import (
    MARIADB_HOST,
    MARIADB_PORT,
    MARIADB_SERVER_URL,
    port_open,
    require_service,
)
from tests.fakes.private_redis import PrivateRedis, private_redis, redis_server_binary

from obsigen.config import Settings
from obsigen.db.engine import make_engine
from obsigen.secrets.connect import redis_connection
from obsigen.services import build_services

# --- refusals at load --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "url"),
    [
        ("database_url", "mysql+asyncmy://obsigen:{pw}@db.example.eu:3306/obsigen"),
        ("redis_url", "redis://:{pw}@cache.example.eu:6379/0"),
        ("redis_url", "rediss://default:{pw}@cache.example.eu:6380/0"),
    ],
)
def test_a_password_inside_a_store_url_is_refused_by_field_without_echo(
    field: str, url: str
) -> None:
    password = secrets.token_urlsafe(12)
    with pytest.raises(ValidationError) as raised:
        Settings(storage={field: url.format(pw=password)})
    message = str(raised.value)
    assert f"storage.{field} holds a password" in message
    assert f"storage.{field.removesuffix('_url')}_password" in message
    assert password not in message


@pytest.mark.parametrize("field", ["database_password", "redis_password"])
def test_a_literal_password_field_is_refused(field: str) -> None:
    password = secrets.token_urlsafe(12)
    with pytest.raises(ValidationError, match=f"storage.{field} must be a secret reference") as r:
        Settings(storage={field: password})
    assert password not in str(r.value)


def test_references_and_passwordless_urls_are_accepted() -> None:
    settings = Settings(
        storage={
            "database_url": "mysql+asyncmy://obsigen@db.example.eu:3306/obsigen",
            "database_password": "awssm:prod/obsigen-db#password?region=eu-central-1",
            "redis_url": "rediss://default@cache.example.eu:6380/0",
            "redis_password": "file:/run/secrets/redis",
        },
        residency={"allow_transfers": []},
    )
    assert settings.storage.database_password.startswith("awssm:")
    # The embedded and loopback defaults need no password at all.
    assert Settings(storage={"redis_url": "redis://127.0.0.1:6379/0"}).storage.redis_password == ""


# --- MariaDB -----------------------------------------------------------------------------


@pytest.fixture
async def mariadb_user() -> AsyncIterator[tuple[str, str]]:
    """A MariaDB user with a password made now, and the URL that names it without one."""
    require_service("MariaDB on 127.0.0.1:3306", port_open(MARIADB_HOST, MARIADB_PORT))
    user = f"h9_{uuid.uuid4().hex[:10]}"
    password = secrets.token_urlsafe(18)
    root = make_engine(MARIADB_SERVER_URL)
    async with root.begin() as conn:
        await conn.execute(text(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'"))
    try:
        yield f"mysql+asyncmy://{user}@{MARIADB_HOST}:{MARIADB_PORT}/", password
    finally:
        async with root.begin() as conn:
            await conn.execute(text(f"DROP USER IF EXISTS '{user}'@'%'"))
        await root.dispose()


async def _select_one(url: str, password_ref: str) -> int | None:
    engine = make_engine(url, password_ref)
    try:
        async with engine.connect() as conn:
            return (await conn.execute(text("SELECT 1"))).scalar()
    finally:
        await engine.dispose()


async def test_the_database_password_comes_from_its_reference_at_each_connect(
    mariadb_user: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, password = mariadb_user
    monkeypatch.setenv("H9_DB_PASSWORD", password)
    assert await _select_one(url, "env:H9_DB_PASSWORD") == 1
    # Without the reference the same URL is refused by the server: nothing else supplied it.
    with pytest.raises(OperationalError):
        await _select_one(url, "")
    # Read at connect time, not at start: a changed secret is what the next connection uses.
    engine = make_engine(url, "env:H9_DB_PASSWORD")
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        monkeypatch.setenv("H9_DB_PASSWORD", "not-" + password)
        await engine.dispose()  # drop pooled connections so the next one is new
        with pytest.raises(OperationalError):
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
    finally:
        await engine.dispose()


# --- Redis -------------------------------------------------------------------------------


@pytest.fixture
def redis_with_password(tmp_path: Path) -> Iterator[tuple[PrivateRedis, str]]:
    require_service("the redis-server binary", redis_server_binary() is not None)
    password = secrets.token_urlsafe(18)
    with private_redis(tmp_path, "--requirepass", password) as server:
        yield server, password


async def _ping(url: str, ref: str) -> bool:
    bare, auth = redis_connection(url, ref)
    client = Redis.from_url(bare, socket_connect_timeout=2, **auth)
    try:
        return bool(await client.ping())
    finally:
        await client.aclose()


async def test_the_redis_password_comes_from_its_reference(
    redis_with_password: tuple[PrivateRedis, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    server, password = redis_with_password
    secret_file = tmp_path / "redis-password"
    secret_file.write_text(password + "\n")
    secret_file.chmod(0o600)
    monkeypatch.setenv("H9_REDIS_PASSWORD", password)
    assert await _ping(server.url, "env:H9_REDIS_PASSWORD")
    assert await _ping(server.url, f"file:{secret_file}")
    # A user name in the URL goes with the password (Redis 6 ACL form).
    with_user = server.url.replace("redis://", "redis://default@")
    assert await _ping(with_user, "env:H9_REDIS_PASSWORD")
    with pytest.raises((AuthenticationError, ResponseError)):
        await _ping(server.url, "")
    monkeypatch.setenv("H9_REDIS_PASSWORD", "not-" + password)
    with pytest.raises((AuthenticationError, ResponseError)):
        await _ping(server.url, "env:H9_REDIS_PASSWORD")


async def test_the_server_wires_both_passwords(
    redis_with_password: tuple[PrivateRedis, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    server, password = redis_with_password
    monkeypatch.setenv("H9_REDIS_PASSWORD", password)
    settings = Settings(
        paths={"data_dir": tmp_path / "var"},
        storage={"redis_url": server.url, "redis_password": "env:H9_REDIS_PASSWORD"},
        sandbox={"pool_size": 0},
    )
    services = build_services(settings)
    try:
        assert services.redis is not None
        assert await services.redis.ping()
    finally:
        await services.aclose()
