"""What every fault test shares: the server ``obsigen serve`` runs, on its own config and a
real loopback socket, chat traffic against it, and the three checks of docs/faults.md.

1. Clear errors: every failure is problem+json with one of the expected statuses and stable
   types, never a 500, and no request outlives the bound its timeouts imply.
2. No data loss: every chat answer the client got with 200 is stored intact with its prompt,
   a failed turn's user message is stored ``failed`` (or was never stored), and
   ``obsigen audit verify`` passes.
3. Recovery without a restart: the same server, never restarted, answers again once the
   dependency is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from obsigen.app import create_app
from obsigen.authz.permissions import Role
from obsigen.config import load_settings
from obsigen.db.engine import make_engine, make_sessionmaker
from obsigen.db.migrate import upgrade_to_head
from obsigen.identity.apikeys import create_api_key
from obsigen.identity.tenants import create_tenant, tenant_by_name
from obsigen.web.problems import MEDIA_TYPE, PROBLEM_BASE
from obsigen.web.serve import uvicorn_config
from tests.conftest import CI
from tests.fakes.private_redis import free_port

OBSIGEN = str(Path(sys.executable).with_name("obsigen"))
REPO = Path(__file__).resolve().parents[2]
PYCACHE = Path(tempfile.gettempdir()) / "obsigen-fault-tests-pycache"

Section = dict[str, Any]


@pytest.fixture(autouse=True)
def _bytecode_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where PYTHONDONTWRITEBYTECODE is set, every Python process a fault test starts (the
    CLI, moto, the upstream) would compile each module it imports again, tens of seconds on
    a loaded machine: their bytecode goes to a cache of their own, outside the source tree."""
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        monkeypatch.delenv("PYTHONDONTWRITEBYTECODE")
        monkeypatch.setenv("PYTHONPYCACHEPREFIX", str(PYCACHE))


def require_tool(name: str, available: bool) -> None:
    """Like tests.conftest.require_service, for binaries: with CI=true a missing one fails."""
    if available:
        return
    if CI:
        pytest.fail(f"{name} is required with CI=true but is not available")
    pytest.skip(f"{name} is not available")


def toml(sections: dict[str, Section]) -> str:
    """Strings, numbers, booleans and lists of them: their JSON spelling is valid TOML."""
    lines: list[str] = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def base_config(data_dir: Path, database_url: str, upstream_url: str) -> dict[str, Section]:
    """What every fault test runs with; each test changes the section of its dependency."""
    return {
        "paths": {"data_dir": str(data_dir)},
        "storage": {"database_url": database_url},
        "inference": {
            "provider": "openai",
            "base_url": upstream_url,
            "region": "de",
            "max_retries": 1,
            "timeout_s": 5,
            "connect_timeout_s": 1,
        },
        # Traffic is the point here, not the limits (docs/ratelimit.md has its own tests).
        "ratelimit": {
            "default": "100000/minute",
            "principal": "100000/minute",
            "tenant": "100000/minute",
        },
        "retention": {"interval_hours": 0},
        "sandbox": {"pool_size": 0},
    }


# --- the server ----------------------------------------------------------------------------


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        line = f"{record.levelname} {record.name}: {record.getMessage()}"
        if record.exc_info and record.exc_info[1] is not None:
            line += f" [{type(record.exc_info[1]).__name__}: {record.exc_info[1]}]"
        self.lines.append(line)


@dataclass
class ObsigenServer:
    """What ``obsigen serve`` runs, in the test's own process: the app built from the config
    file, under the CLI's uvicorn configuration, on a real loopback socket. One event loop
    serves the traffic and sends it, so a fault test can stop a dependency in the middle of
    a request and see what the client gets over HTTP; ``startups`` shows recovery happened
    without a restart."""

    config: Path
    port: int = field(default_factory=free_port)
    startups: int = 0
    _server: uvicorn.Server | None = None
    _task: asyncio.Task[None] | None = None
    _log: _Lines = field(default_factory=_Lines)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        settings = load_settings(self.config)
        settings.server.host, settings.server.port = "127.0.0.1", self.port
        app = create_app(settings)
        lifespan = app.router.lifespan_context

        @contextlib.asynccontextmanager
        async def counted(app: Any) -> AsyncIterator[None]:
            self.startups += 1
            async with lifespan(app):
                yield

        app.router.lifespan_context = counted
        # No log_config: uvicorn would reconfigure logging for the whole test session.
        config = uvicorn_config(
            app, settings, log_config=None, access_log=False, timeout_graceful_shutdown=5
        )
        self._server = uvicorn.Server(config)
        logging.getLogger("obsigen").addHandler(self._log)
        self._task = asyncio.create_task(self._server.serve())

    async def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(timeout=5) as client:
            while time.monotonic() < deadline:
                assert self.alive(), f"the server stopped: {self.log_tail()}"
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(f"{self.base_url}/readyz")).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise AssertionError(f"the server was not ready in {timeout_s} s: {self.log_tail()}")

    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    def log_tail(self, lines: int = 30) -> str:
        if self._task is not None and self._task.done() and self._task.exception():
            return repr(self._task.exception())
        # Repeated lines once, with their count: an outage logs the same warning many times.
        counted: list[list[Any]] = []
        for line in self._log.lines:
            if counted and counted[-1][0] == line:
                counted[-1][1] += 1
            else:
                counted.append([line, 1])
        return "\n".join(f"{n}x {line}" for line, n in counted[-lines:])

    async def stop(self) -> None:
        try:
            if self._server is not None and self._task is not None:
                self._server.should_exit = True
                await asyncio.wait_for(self._task, timeout=30)
        finally:
            logging.getLogger("obsigen").removeHandler(self._log)

    def cli(self, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
        # Only the config file speaks: nothing from the environment the tests run in.
        env = {k: v for k, v in os.environ.items() if not k.startswith("OBSIGEN_")}
        return subprocess.run(
            [OBSIGEN, *args, "--config", str(self.config)],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )

    def audit_verify(self) -> None:
        """``obsigen audit verify`` over every tenant's chain; fails the test if it does."""
        verified = self.cli("audit", "verify")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert "intact" in verified.stdout.lower() or "ok" in verified.stdout.lower(), (
            verified.stdout
        )

    def assert_recovered_in_place(self) -> None:
        """Property 3: the server that met the fault is the one answering, never restarted."""
        assert self.alive(), self.log_tail()
        assert self.startups == 1


@dataclass
class Deployment:
    server: ObsigenServer
    database_url: str
    tenant: str
    tenant_id: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


async def provision(database_url: str) -> tuple[str, str, str]:
    """Migrate, then one tenant with one member API key: (tenant name, tenant id, key)."""
    engine = make_engine(database_url)
    try:
        await upgrade_to_head(engine)
        sessions = make_sessionmaker(engine)
        name = f"faults-{uuid.uuid4().hex[:8]}"
        async with sessions.begin() as session:
            tenant = await create_tenant(session, name)
            tenant_id = tenant.id
        async with sessions.begin() as session:
            created = await create_api_key(
                session, await tenant_by_name(session, name), "faults", Role.MEMBER, None
            )
        return name, tenant_id, created.key
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def deployed(
    tmp_path: Path, config: dict[str, Section], *, ready_timeout_s: float = 60.0
) -> AsyncIterator[Deployment]:
    """Provision the database, write the config, start ``obsigen serve`` and wait until ready."""
    database_url = config["storage"]["database_url"]
    tenant, tenant_id, key = await provision(database_url)
    path = tmp_path / "obsigen.toml"
    path.write_text(toml(config))
    server = ObsigenServer(path)
    await server.start()
    try:
        await server.wait_ready(ready_timeout_s)
        yield Deployment(server, database_url, tenant, tenant_id, key)
    finally:
        await server.stop()


# --- traffic -------------------------------------------------------------------------------


@dataclass
class Outcome:
    kind: str
    n: int
    sent: str
    started: float
    elapsed: float
    status: int | None = None
    media_type: str = ""
    body: Any = None
    error: str | None = None  # a transport error: the server broke a connection or hung
    retry_after: str | None = None

    @property
    def problem_type(self) -> str | None:
        if isinstance(self.body, dict) and isinstance(self.body.get("type"), str):
            return str(self.body["type"]).removeprefix(PROBLEM_BASE)
        return None

    def describe(self) -> str:
        detail = self.error or json.dumps(self.body)[:300]
        return f"{self.kind}#{self.n} after {self.elapsed:.1f}s: {self.status} {detail}"


async def timed(
    kind: str, n: int, sent: str, call: Callable[[], Awaitable[httpx.Response]]
) -> Outcome:
    started = time.monotonic()
    outcome = Outcome(kind, n, sent, started, 0.0)
    try:
        response = await call()
    except httpx.TimeoutException as exc:
        outcome.error = f"hung: {type(exc).__name__}"
    except httpx.TransportError as exc:
        outcome.error = f"transport: {type(exc).__name__}: {exc}"
    else:
        outcome.status = response.status_code
        outcome.media_type = response.headers.get("content-type", "").split(";")[0]
        outcome.retry_after = response.headers.get("retry-after")
        try:
            outcome.body = response.json()
        except ValueError:
            outcome.body = response.text[:500]
    outcome.elapsed = time.monotonic() - started
    return outcome


async def chat_once(client: httpx.AsyncClient, d: Deployment, n: int, **extra: Any) -> Outcome:
    content = f"fault traffic {n} {uuid.uuid4().hex[:8]}"
    body = {"model": "fake-model", "messages": [{"role": "user", "content": content}], **extra}
    return await timed(
        "chat",
        n,
        content,
        lambda: client.post(
            f"{d.server.base_url}/v1/chat/completions", json=body, headers=d.headers
        ),
    )


@dataclass
class Traffic:
    """Lanes of requests until ``stop`` is set; every outcome kept in order of start."""

    outcomes: list[Outcome] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    counter: Iterator[int] = field(default_factory=itertools.count)
    in_flight: int = 0
    # Cleared: lanes start no new request until it is set again.
    gate: asyncio.Event | None = None

    async def lanes(
        self,
        count: int,
        request: Callable[[httpx.AsyncClient, int], Awaitable[Outcome]],
        *,
        timeout_s: float,
        pause_s: float = 0.02,
    ) -> None:
        async with httpx.AsyncClient(timeout=timeout_s) as client:

            async def lane() -> None:
                while not self.stop.is_set():
                    if self.gate is not None:
                        await self.gate.wait()
                    self.in_flight += 1
                    try:
                        self.outcomes.append(await request(client, next(self.counter)))
                    finally:
                        self.in_flight -= 1
                    await asyncio.sleep(pause_s)

            await asyncio.gather(*(lane() for _ in range(count)))

    def between(self, start: float, end: float) -> list[Outcome]:
        return [o for o in self.outcomes if start <= o.started < end]

    def ok(self, kind: str = "chat", status: int = 200) -> list[Outcome]:
        return [o for o in self.outcomes if o.kind == kind and o.status == status]


async def until(
    predicate: Callable[[], bool], timeout_s: float, message: str, interval_s: float = 0.1
) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, message
        await asyncio.sleep(interval_s)


def assert_clear_errors(
    outcomes: list[Outcome],
    allowed: dict[int, set[str]],
    *,
    bound_s: float,
    ok_statuses: frozenset[int] = frozenset({200}),
) -> None:
    """Property 1: every answer is a success or an expected problem; nothing hung."""
    bad = []
    for o in outcomes:
        if o.error is not None or o.elapsed > bound_s:
            bad.append(o.describe())
        elif o.status in ok_statuses:
            continue
        elif (
            o.status not in allowed
            or o.media_type != MEDIA_TYPE
            or o.problem_type not in allowed[o.status]
        ):
            bad.append(o.describe())
    assert not bad, f"{len(bad)} unclear or hung answers (bound {bound_s} s):\n" + "\n".join(
        bad[:20]
    )


def statuses(outcomes: list[Outcome]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for o in outcomes:
        label = str(o.status) if o.error is None else "transport"
        if o.problem_type:
            label += f" {o.problem_type}"
        counts[label] = counts.get(label, 0) + 1
    return counts


# --- what was stored -----------------------------------------------------------------------


async def conversations_by_title(client: httpx.AsyncClient, d: Deployment) -> dict[str, list[str]]:
    """Every conversation of the test's key, by title (a new conversation is titled with its
    first user message, and the traffic's messages are unique and short)."""
    found: dict[str, list[str]] = {}
    before: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 200, **({"before": before} if before else {})}
        page = await client.get(
            f"{d.server.base_url}/api/v1/conversations", params=params, headers=d.headers
        )
        assert page.status_code == 200, page.text
        rows = page.json()
        for row in rows:
            found.setdefault(row["title"], []).append(row["id"])
        if len(rows) < 200:
            return found
        before = rows[-1]["id"]


async def assert_chats_stored(
    d: Deployment, outcomes: list[Outcome], *, settle_s: float = 30.0
) -> dict[str, int]:
    """Property 2 for chat, read back through the API of the recovered server: every 200
    answer stored intact beside its prompt; every failed turn's prompt stored ``failed`` with
    a reason, or not stored at all.

    A failure the database could not take during its own outage is written once it is back
    (obsigen/db/deferred.py): ``settle_s`` gives those writes time to land.
    """
    deadline = time.monotonic() + settle_s
    while True:
        problems, counts = await _check_chats(d, outcomes)
        if not problems or time.monotonic() > deadline:
            break
        await asyncio.sleep(1.0)
    assert not problems, (
        f"{len(problems)} turns stored wrongly:\n"
        + "\n".join(problems[:20])
        + f"\nserver log:\n{d.server.log_tail(60)}"
    )
    return counts


async def _check_chats(d: Deployment, outcomes: list[Outcome]) -> tuple[list[str], dict[str, int]]:
    problems: list[str] = []
    counts = {"answered": 0, "failed_marked": 0, "failed_not_stored": 0}
    async with httpx.AsyncClient(timeout=30) as client:
        titles = await conversations_by_title(client, d)

        async def messages(conversation_id: str) -> list[dict[str, Any]]:
            response = await client.get(
                f"{d.server.base_url}/api/v1/conversations/{conversation_id}", headers=d.headers
            )
            assert response.status_code == 200, response.text
            return list(response.json()["messages"])

        for o in outcomes:
            if o.kind != "chat" or o.error is not None:
                continue
            if o.status == 200:
                stored = await messages(o.body["conversation_id"])
                shape = [(m["role"], m["content"], m["status"]) for m in stored]
                answer = o.body["choices"][0]["message"]["content"]
                if shape != [("user", o.sent, "ok"), ("assistant", answer, "ok")]:
                    problems.append(f"#{o.n} answered 200 but stored as {shape}")
                counts["answered"] += 1
                continue
            prompts = [
                m
                for conversation_id in titles.get(o.sent, [])
                for m in await messages(conversation_id)
                if m["role"] == "user"
            ]
            if not prompts:
                counts["failed_not_stored"] += 1
            elif all(m["status"] == "failed" and m["error"] for m in prompts):
                counts["failed_marked"] += 1
            else:
                problems.append(f"#{o.n} failed ({o.status}) but its prompt is {prompts}")
    return problems, counts
