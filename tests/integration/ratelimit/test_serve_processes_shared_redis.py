"""Two ``obsigen serve`` processes sharing one Redis: one limit between them, and fail-closed.

Everything runs as operators run it: the real console script, two OS processes on their own
ports over one SQLite database, and a private ``redis-server`` of this test (never the
machine's shared one on 6379, which other tests use) that the test then stops.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from tests.conftest import require_service
from tests.fakes.openai_upstream import FakeUpstream
from tests.fakes.private_redis import (
    PrivateRedis,
    free_port,
    private_redis,
    redis_server_binary,
    stop_process,
    wait_for_port,
)

OBSIGEN = Path(sys.executable).parent / "obsigen"
LIMIT = 20  # GET /v1/models per principal, shared by both processes
# The test user's password, made per run.
USER_PASSWORD = secrets.token_urlsafe(18)


@pytest.fixture
def redis_of_this_test(tmp_path: Path) -> Iterator[PrivateRedis]:
    require_service("the redis-server binary", redis_server_binary() is not None)
    with private_redis(tmp_path) as server:
        yield server


@dataclass
class Deployment:
    ports: tuple[int, int]
    api_key: str
    upstream: FakeUpstream


def _obsigen(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        [str(OBSIGEN), *args], input=stdin, env=env, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def deployment(
    tmp_path: Path,
    redis_of_this_test: PrivateRedis,
    upstream_server: tuple[FakeUpstream, str],
    upstream: FakeUpstream,
) -> Iterator[Deployment]:
    _, upstream_url = upstream_server
    config = tmp_path / "obsigen.toml"
    config.write_text(
        f"""
[paths]
data_dir = "{tmp_path / "var"}"
[storage]
redis_url = "{redis_of_this_test.url}"
[inference]
provider = "openai"
base_url = "{upstream_url}"
region = "de"
max_retries = 0
[sandbox]
pool_size = 0
[retention]
interval_hours = 0
[ratelimit]
endpoints = {{ "GET /v1/models" = "{LIMIT}/hour" }}
""",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("OBSIGEN_")}
    env["OBSIGEN_CONFIG"] = str(config)
    _obsigen(env, "migrate")
    _obsigen(env, "tenant", "create", "acme")
    _obsigen(env, "user", "create", "--tenant", "acme", "--email", "m@acme.eu",
             "--role", "member", "--password-stdin", stdin=USER_PASSWORD + "\n")  # fmt: skip
    created = json.loads(
        _obsigen(env, "apikey", "create", "--tenant", "acme", "--name", "svc", "--json")
    )
    ports = (free_port(), free_port())
    while ports[1] == ports[0]:
        ports = (ports[0], free_port())
    servers: list[subprocess.Popen[bytes]] = []
    try:
        for port in ports:
            # One after the other: the first start creates the signing key both then share.
            log = tmp_path / f"serve-{port}.log"
            with log.open("wb") as sink:
                proc = subprocess.Popen(
                    [str(OBSIGEN), "serve", "--port", str(port)],
                    env=env,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                )
            servers.append(proc)
            wait_for_port(port, proc, 60, log)
        yield Deployment(ports, created["key"], upstream)
    finally:
        for proc in servers:
            stop_process(proc)


async def _models(client: httpx.AsyncClient, port: int, key: str) -> httpx.Response:
    return await client.get(
        f"http://127.0.0.1:{port}/v1/models", headers={"Authorization": f"Bearer {key}"}
    )


async def _chat(client: httpx.AsyncClient, port: int, key: str) -> httpx.Response:
    return await client.post(
        f"http://127.0.0.1:{port}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "fake-model", "messages": [{"role": "user", "content": "Hello"}]},
    )


async def _login(client: httpx.AsyncClient, port: int) -> httpx.Response:
    return await client.post(
        f"http://127.0.0.1:{port}/auth/login",
        json={"tenant": "acme", "email": "m@acme.eu", "password": USER_PASSWORD},
    )


async def test_two_servers_share_one_limit_exactly_and_fail_closed_without_redis(
    deployment: Deployment, redis_of_this_test: PrivateRedis
) -> None:
    first, second = deployment.ports
    key = deployment.api_key
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        # Both work normally: a login and an inference call each.
        for port in deployment.ports:
            assert (await _login(client, port)).status_code == 200
            assert (await _chat(client, port, key)).status_code == 200
        calls_before = len(deployment.upstream.chat_requests)

        # N + 10 at once, half on each process, against a limit of N shared between them.
        ports = [first if i % 2 else second for i in range(LIMIT + 10)]
        answers = await asyncio.gather(*(_models(client, port, key) for port in ports))
        statuses = [answer.status_code for answer in answers]
        assert statuses.count(200) == LIMIT, statuses
        assert statuses.count(429) == 10, statuses
        # Each process got 15 requests and only 20 passed in all: both let at least 5 through,
        # so the count above is one limit spanning both processes, not one per process.
        for port in deployment.ports:
            passed = [s for s, p in zip(statuses, ports, strict=True) if p == port and s == 200]
            assert len(passed) >= 5
        refused = next(a for a in answers if a.status_code == 429)
        assert int(refused.headers["Retry-After"]) >= 1
        assert refused.headers["content-type"].startswith("application/problem+json")
        allowed = next(a for a in answers if a.status_code == 200)
        assert allowed.headers["RateLimit-Limit"] == str(LIMIT)
        assert "RateLimit-Remaining" in allowed.headers
        assert "RateLimit-Reset" in allowed.headers

        # Redis stops: authentication and inference answer 503 on both processes, and nothing
        # gets through unmetered (not even reads, closed by default).
        redis_of_this_test.stop()
        for port in deployment.ports:
            for answer in (
                await _login(client, port),
                await _chat(client, port, key),
                await _models(client, port, key),
            ):
                assert answer.status_code == 503, (answer.request.url, answer.text)
                assert answer.headers["content-type"].startswith("application/problem+json")
                assert "Strict-Transport-Security" not in answer.headers  # plain HTTP here
                assert "content-security-policy" in answer.headers
        assert len(deployment.upstream.chat_requests) == calls_before
