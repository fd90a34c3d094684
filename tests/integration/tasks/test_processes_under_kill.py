"""The Must-show of issue #12: three `obsigen serve` and two `obsigen worker` processes on one
MariaDB and one Redis, mixed traffic, one API process and one worker killed with SIGKILL
mid-traffic. Every request ends in success or a retryable failure (the killed process's
connection refused or reset), every accepted upload ends ingested exactly once, and the audit
chain verifies afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from tests.conftest import (
    MARIADB_HOST,
    MARIADB_PORT,
    MARIADB_SERVER_URL,
    REDIS_URL,
    port_open,
    require_service,
)
from tests.fakes.openai_upstream import FakeUpstream

from obsigen.db.engine import make_engine
from obsigen.sandbox.detect import detect

OBSIGEN = str(Path(sys.executable).with_name("obsigen"))
BOUNDARY = "obsigen-killtest-boundary"
TRAFFIC_S = 12.0
KILL_AT_S = 4.0
RETRYABLE = (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Deployment:
    config: Path
    env: dict[str, str]
    database: str
    logs: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [OBSIGEN, *args, "--config", str(self.config)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def start(self, name: str, *args: str) -> None:
        with (self.logs / f"{name}.log").open("wb") as log:
            # The child keeps its own copy of the descriptor.
            self.processes[name] = subprocess.Popen(
                [OBSIGEN, *args, "--config", str(self.config)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def serve(self, name: str) -> None:
        port = free_port()
        self.ports[name] = port
        self.start(name, "serve", "--host", "127.0.0.1", "--port", str(port))

    async def ready(self, name: str, deadline_s: float = 60) -> None:
        url = f"http://127.0.0.1:{self.ports[name]}/readyz"
        end = time.monotonic() + deadline_s
        async with httpx.AsyncClient() as client:
            while time.monotonic() < end:
                assert self.processes[name].poll() is None, self.log_of(name)
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(url)).status_code == 200:
                        return
                await asyncio.sleep(0.2)
        raise AssertionError(f"{name} not ready: {self.log_of(name)}")

    def log_of(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")[-3000:]

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


@pytest.fixture
async def deployment(
    tmp_path: Path, upstream_server: tuple[FakeUpstream, str]
) -> AsyncIterator[Deployment]:
    require_service("MariaDB on 127.0.0.1:3306", port_open(MARIADB_HOST, MARIADB_PORT))
    require_service("Redis on 127.0.0.1:6379", port_open("127.0.0.1", 6379))
    tag = uuid.uuid4().hex[:10]
    database = f"obsigen_killtest_{tag}"
    queue = f"obsigen:killtest:{tag}"
    server = make_engine(MARIADB_SERVER_URL)
    async with server.begin() as conn:
        await conn.execute(text(f"CREATE DATABASE {database} CHARACTER SET utf8mb4"))
    config = tmp_path / "obsigen.toml"
    code_runs = detect().backend is not None
    config.write_text(
        f"""
[paths]
data_dir = "{tmp_path / "var"}"
[storage]
database_url = "{MARIADB_SERVER_URL}{database}?charset=utf8mb4"
redis_url = "{REDIS_URL}"
[inference]
provider = "openai"
base_url = "{upstream_server[1]}"
region = "de"
max_retries = 1
timeout_s = 10
[ratelimit]
default = "100000/minute"
[retention]
interval_hours = 0
[sandbox]
pool_size = {1 if code_runs else 0}
[tasks]
queue = "{queue}"
redelivery_after_s = 3
backoff_base_s = 0.2
shutdown_grace_s = 5
concurrency = 2
"""
    )
    logs = tmp_path / "logs"
    logs.mkdir()
    env = {**os.environ, "OBSIGEN_CONFIG": str(config)}
    env.pop("OBSIGEN_STORAGE__DATABASE_URL", None)
    deployed = Deployment(config, env, database, logs)
    try:
        yield deployed
    finally:
        for process in deployed.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        async with server.begin() as conn:
            await conn.execute(text(f"DROP DATABASE IF EXISTS {database}"))
        await server.dispose()
        redis = Redis.from_url(REDIS_URL)
        await redis.delete(queue, f"autoclaim:{queue}:{queue}")
        await redis.aclose()


@dataclass
class Outcomes:
    ok: Counter[str] = field(default_factory=Counter)
    retryable: Counter[str] = field(default_factory=Counter)
    bad: list[str] = field(default_factory=list)
    uploads: list[str] = field(default_factory=list)


def multipart(name: str, data: bytes) -> tuple[bytes, str]:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: text/plain\r\n\r\n"
    ).encode()
    return (
        head + data + f"\r\n--{BOUNDARY}--\r\n".encode(),
        f"multipart/form-data; boundary={BOUNDARY}",
    )


async def one_request(
    client: httpx.AsyncClient, port: int, kind: str, key: str, n: int, out: Outcomes
) -> None:
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {key}"}
    try:
        if kind == "chat":
            body = {"model": "fake-model", "messages": [{"role": "user", "content": f"hi {n}"}]}
            response = await client.post(f"{base}/v1/chat/completions", json=body, headers=headers)
            expected = 200
        elif kind == "upload":
            words = " ".join(
                random.choice(["pump", "heat", "bee", "hive", "loaf"]) for _ in range(600)
            )
            content, ctype = multipart(f"note-{n}.txt", f"Note {n}. {words}".encode())
            response = await client.post(
                f"{base}/api/v1/files", content=content, headers={**headers, "Content-Type": ctype}
            )
            expected = 201
        else:
            body = {"language": "python", "code": f"print({n} * 2)"}
            response = await client.post(f"{base}/api/v1/code/run", json=body, headers=headers)
            expected = 200
    except RETRYABLE as exc:
        out.retryable[f"{kind}:{type(exc).__name__}"] += 1
        return
    if response.status_code == expected:
        out.ok[kind] += 1
        if kind == "upload":
            out.uploads.append(response.json()["id"])
        return
    out.bad.append(f"{kind} on {port}: {response.status_code} {response.text[:300]}")


async def drive(
    deployment: Deployment, key: str, kinds: list[str], victims: tuple[str, str]
) -> Outcomes:
    out = Outcomes()
    ports = [deployment.ports[name] for name in ("serve1", "serve2", "serve3")]
    counter = itertools.count()
    start = time.monotonic()
    killed = False

    async def lane(client: httpx.AsyncClient) -> None:
        while time.monotonic() - start < TRAFFIC_S:
            n = next(counter)
            await one_request(client, ports[n % 3], kinds[n % len(kinds)], key, n, out)

    async def killer() -> None:
        nonlocal killed
        await asyncio.sleep(KILL_AT_S)
        for victim in victims:
            deployment.processes[victim].send_signal(signal.SIGKILL)
        killed = True

    async with httpx.AsyncClient(timeout=30) as client:
        await asyncio.gather(killer(), *(lane(client) for _ in range(6)))
    assert killed
    return out


async def wait_ingested(deployment: Deployment, key: str, file_ids: list[str]) -> dict[str, str]:
    base = f"http://127.0.0.1:{deployment.ports['serve1']}"
    statuses: dict[str, str] = {}
    end = time.monotonic() + 60
    async with httpx.AsyncClient(timeout=10) as client:
        while time.monotonic() < end:
            for file_id in file_ids:
                if statuses.get(file_id) == "done":
                    continue
                response = await client.get(
                    f"{base}/api/v1/files/{file_id}/ingestion",
                    headers={"Authorization": f"Bearer {key}"},
                )
                statuses[file_id] = response.json().get("status", str(response.status_code))
            if all(status == "done" for status in statuses.values()):
                break
            await asyncio.sleep(0.5)
    return statuses


async def test_killing_an_api_process_and_a_worker_loses_no_request_or_task(
    deployment: Deployment,
) -> None:
    d = deployment
    migrated = d.cli("migrate")
    assert migrated.returncode == 0, migrated.stderr
    tenant = d.cli("tenant", "create", "killtest", "--json")
    assert tenant.returncode == 0, tenant.stderr
    created = d.cli("apikey", "create", "--tenant", "killtest", "--name", "load", "--json")
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)["key"]

    # One server first: it makes the deployment's signing keys the others then load.
    d.serve("serve1")
    await d.ready("serve1")
    d.serve("serve2")
    d.serve("serve3")
    d.start("worker1", "worker")
    d.start("worker2", "worker")
    await d.ready("serve2")
    await d.ready("serve3")

    kinds = ["chat", "upload", "upload"]
    if detect().backend is not None:
        kinds.append("code")
    started = time.monotonic()
    out = await drive(d, key, kinds, ("serve2", "worker1"))

    assert out.bad == [], out.bad
    assert out.ok["chat"] > 0
    assert out.ok["upload"] > 0
    if "code" in kinds:
        assert out.ok["code"] > 0
    # The killed server's share of the traffic failed retryably, and only that.
    assert sum(out.retryable.values()) > 0

    statuses = await wait_ingested(d, key, out.uploads)
    not_done = {file_id: s for file_id, s in statuses.items() if s != "done"}
    assert not not_done, (not_done, d.log_of("worker2"))

    engine = make_engine(f"{MARIADB_SERVER_URL}{d.database}?charset=utf8mb4")
    try:
        async with engine.connect() as conn:
            duplicates = (
                await conn.execute(
                    text(
                        "SELECT file_id, seq, COUNT(*) FROM document_chunks "
                        "GROUP BY file_id, seq HAVING COUNT(*) > 1"
                    )
                )
            ).all()
            chunked = set(
                (await conn.scalars(text("SELECT DISTINCT file_id FROM document_chunks"))).all()
            )
    finally:
        await engine.dispose()
    assert duplicates == []
    # Every accepted upload is indexed. The killed server may have stored and queued an upload
    # whose 201 never reached the client (it saw a reset): that file is indexed too.
    assert set(out.uploads) <= chunked

    d.stop_all()
    verified = d.cli("audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    elapsed = time.monotonic() - started
    print(  # the numbers the issue asks for, in the test log
        f"\nkill test: ok={dict(out.ok)} retryable={dict(out.retryable)} "
        f"uploads={len(out.uploads)} elapsed={elapsed:.1f}s"
    )
