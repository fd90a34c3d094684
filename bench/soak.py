"""Soak: two ``obsigen serve`` processes on one MariaDB and one Redis under mixed traffic.

    .venv/bin/python -m bench.soak [--minutes 10] [--rate 4] [--redis-db 9]   # make soak

Set-up: a fresh MariaDB database (``obsigen_soak_<random>`` on 127.0.0.1:3306, dropped at the
end unless ``--keep-db``), Redis db ``--redis-db`` on 127.0.0.1:6379 (emptied before and
after: the soak owns that db number; every other user of Redis here is on db 0), one data
directory for both servers (the software signing keys must be the same for a token issued by
one to be accepted by the other), the fake OpenAI-compatible upstream (``provider = openai``),
code runs in bwrap, audit to the database only (the record that ``obsigen audit verify``
checks).

Traffic: an open loop at a fixed rate (requests are sent on schedule whether or not the
previous ones have finished, as independent users would), the kinds drawn in a fixed shuffled
order from the mix weights and the processes taken in turn: chat turns (API key), small text
uploads (API key), ``print``-style code runs (API key), SCIM user creation and PATCH (SCIM
token), and audit searches (an auditor's MFA session, refreshed before its access token
expires). It ends by itself after ``--minutes`` plus at most a minute of draining; an alarm
stops it (servers included) if anything hangs beyond that.

Reported: per kind count, error rate and p50/p99; per process the RSS after warm-up and at the
end, its growth and peak (VmHWM); the audit chain verified at the end. Writes
``bench/results/soak.json``, ``soak.png`` and the soak section of SUMMARY.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import statistics
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import pyotp
import redis

from bench.load import summarise
from bench.procs import (
    LOOPBACK,
    BenchError,
    Server,
    free_port,
    run_checked,
    server_memory,
    start_ready,
    stop,
)
from bench.report import machine_info, write_suite, write_summary
from bench.targets import REPO, obsigen_bin, obsigen_env, start_fake_upstream

SUITE = "soak"
WORK = REPO / "bench" / ".work" / SUITE
MARIADB = "mysql+asyncmy://root@127.0.0.1:3306/"
# Weights of each kind in the traffic; chat turns are what the platform is for.
MIX = {"chat": 6, "upload": 2, "code": 2, "scim_create": 1, "scim_patch": 1, "audit_search": 1}
PROCESSES = ("A", "B")
MAX_IN_FLIGHT = 256  # past this the client itself is the bottleneck: counted, not sent
REQUEST_TIMEOUT_S = 60.0
DRAIN_S = 60.0
SAMPLE_EVERY_S = 10.0
TOKEN_REFRESH_S = 600.0  # access tokens live 900 s
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
CODE = {"language": "python", "code": "print(sum(range(1000)))"}


# --- set-up ----------------------------------------------------------------------------------


def _sql(url: str, statement: str) -> None:
    from sqlalchemy import text

    from obsigen.db.engine import make_engine

    async def run() -> None:
        engine = make_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.execute(text(statement))
        finally:
            await engine.dispose()

    asyncio.run(run())


def _redis_client(db: int) -> redis.Redis:
    return redis.Redis(host=LOOPBACK, port=6379, db=db, socket_timeout=10)


def soak_env(data_dir: Path, upstream_url: str, database: str, redis_db: int) -> dict[str, str]:
    env = obsigen_env(data_dir, upstream_url)
    env |= {
        "OBSIGEN_STORAGE__DATABASE_URL": f"{MARIADB}{database}?charset=utf8mb4",
        "OBSIGEN_STORAGE__REDIS_URL": f"redis://{LOOPBACK}:6379/{redis_db}",
        "OBSIGEN_SANDBOX__BACKEND": "bwrap",
        "OBSIGEN_SANDBOX__POOL_SIZE": "2",
        "OBSIGEN_SANDBOX__QUEUE_TIMEOUT_S": "30",
        "OBSIGEN_AUDIT__SINKS": json.dumps(["database"]),
        "OBSIGEN_TASKS__QUEUE": f"obsigen-soak:{database}:tasks",
    }
    return env


@dataclass
class Credentials:
    api_key: str
    scim_token: str
    auditor_email: str
    auditor_password: str
    totp_secret: str


def _cli_json(env: dict[str, str], *args: str, stdin: str | None = None) -> dict[str, Any]:
    import subprocess

    done = subprocess.run(
        [str(obsigen_bin()), *args, "--json"],
        env=env,
        cwd=REPO,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"obsigen {' '.join(args)} exited {done.returncode}: {done.stderr}")
    for line in reversed(done.stdout.strip().splitlines()):
        if line.startswith("{"):
            parsed: dict[str, Any] = json.loads(line)
            return parsed
    raise BenchError(f"obsigen {' '.join(args)} printed no JSON: {done.stdout}")


def provision(env: dict[str, str]) -> Credentials:
    run_checked([str(obsigen_bin()), "migrate"], env=env, cwd=REPO, timeout_s=300)
    _cli_json(env, "tenant", "create", "soak")
    key = _cli_json(env, "apikey", "create", "--tenant", "soak", "--name", "soak")["key"]
    scim = _cli_json(env, "scim", "token", "create", "--tenant", "soak", "--name", "soak")
    email, password = "auditor@soak.example", uuid.uuid4().hex + "Aa1!"  # pragma: allowlist secret
    auditor = _cli_json(
        env,
        "user",
        "create",
        "--tenant",
        "soak",
        "--email",
        email,
        "--role",
        "auditor",
        "--password-stdin",
        stdin=password + "\n",
    )
    secret = pyotp.parse_uri(auditor["otpauth_uri"]).secret
    return Credentials(key, scim["token"], email, password, secret)


def start_server(name: str, env: dict[str, str], workdir: Path) -> Server:
    port = free_port()
    return start_ready(
        f"Obsigen {name}",
        [str(obsigen_bin()), "serve", "--host", LOOPBACK, "--port", str(port)],
        env=env,
        log_path=workdir / f"obsigen-{name}.log",
        url=f"http://{LOOPBACK}:{port}",
        cwd=REPO,
        ready_path="/readyz",
        timeout_s=180,
    )


# --- traffic ---------------------------------------------------------------------------------


@dataclass
class Outcome:
    at_s: float  # seconds since the start of the measured run
    kind: str
    process: str
    ok: bool
    status: str  # "200", "http_500", "ConnectTimeout", ...
    latency_ms: float


@dataclass
class Traffic:
    """Shared state of the clients: credentials, tokens, SCIM users made so far, outcomes."""

    creds: Credentials
    run_id: str
    clients: dict[str, httpx.AsyncClient]
    auditor_token: str = ""
    refresh_token: str = ""
    scim_users: list[str] = field(default_factory=list)
    counter: int = 0
    outcomes: list[Outcome] = field(default_factory=list)

    def next_number(self) -> int:
        self.counter += 1
        return self.counter


async def login(traffic: Traffic, client: httpx.AsyncClient) -> None:
    creds = traffic.creds
    body = {
        "tenant": "soak",
        "email": creds.auditor_email,
        "password": creds.auditor_password,
        "totp": pyotp.TOTP(creds.totp_secret).now(),
    }
    response = await client.post("/auth/login", json=body)
    if response.status_code != 200:
        raise BenchError(f"auditor login answered {response.status_code}: {response.text[:300]}")
    tokens = response.json()
    traffic.auditor_token, traffic.refresh_token = tokens["access_token"], tokens["refresh_token"]


async def refresh(traffic: Traffic, client: httpx.AsyncClient) -> None:
    response = await client.post("/auth/refresh", json={"refresh_token": traffic.refresh_token})
    if response.status_code != 200:
        raise BenchError(f"token refresh answered {response.status_code}: {response.text[:300]}")
    tokens = response.json()
    traffic.auditor_token, traffic.refresh_token = tokens["access_token"], tokens["refresh_token"]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _chat(traffic: Traffic, client: httpx.AsyncClient, n: int) -> tuple[bool, str]:
    prompt = f"Soak turn {n}: what is {n} plus one?"
    body = {"model": "fake-model", "messages": [{"role": "user", "content": prompt}]}
    response = await client.post(
        "/v1/chat/completions", json=body, headers=_bearer(traffic.creds.api_key)
    )
    ok = response.status_code == 200 and bool(response.json().get("choices"))
    return ok, str(response.status_code)


async def _upload(traffic: Traffic, client: httpx.AsyncClient, n: int) -> tuple[bool, str]:
    text = f"Soak upload {n} of run {traffic.run_id}.\n" + "Lorem ipsum dolor sit amet. " * 100
    response = await client.post(
        "/api/v1/files",
        files={"file": (f"soak-{n}.txt", text.encode(), "text/plain")},
        headers=_bearer(traffic.creds.api_key),
    )
    return response.status_code == 201, str(response.status_code)


async def _code(traffic: Traffic, client: httpx.AsyncClient, n: int) -> tuple[bool, str]:
    response = await client.post(
        "/api/v1/code/run", json=CODE, headers=_bearer(traffic.creds.api_key)
    )
    ok = response.status_code == 200 and response.json().get("stdout") == "499500\n"
    return ok, str(response.status_code)


def _scim_headers(traffic: Traffic) -> dict[str, str]:
    return {**_bearer(traffic.creds.scim_token), "Content-Type": "application/scim+json"}


async def _scim_create(traffic: Traffic, client: httpx.AsyncClient, n: int) -> tuple[bool, str]:
    user = f"soak-{traffic.run_id}-{n}@soak.example"
    body = {
        "schemas": [USER_SCHEMA],
        "userName": user,
        "active": True,
        "name": {"givenName": "Soak", "familyName": str(n)},
        "emails": [{"value": user, "type": "work", "primary": True}],
    }
    response = await client.post("/scim/v2/Users", json=body, headers=_scim_headers(traffic))
    if response.status_code == 201:
        traffic.scim_users.append(response.json()["id"])
    return response.status_code == 201, str(response.status_code)


async def _scim_patch(traffic: Traffic, client: httpx.AsyncClient, n: int) -> tuple[bool, str]:
    if not traffic.scim_users:
        return await _scim_create(traffic, client, n)
    user_id = traffic.scim_users[n % len(traffic.scim_users)]
    change = {"op": "replace", "path": "displayName", "value": f"Soak {n}"}
    body = {"schemas": [PATCH_SCHEMA], "Operations": [change]}
    response = await client.patch(
        f"/scim/v2/Users/{user_id}", json=body, headers=_scim_headers(traffic)
    )
    return response.status_code == 200, str(response.status_code)


async def _audit_search(traffic: Traffic, client: httpx.AsyncClient, n: int) -> tuple[bool, str]:
    kinds = ("chat.prompt", "file.upload", "admin.change", "tool.call")
    response = await client.get(
        "/api/v1/audit/events",
        params={"limit": 50, "type": kinds[n % len(kinds)]},
        headers=_bearer(traffic.auditor_token),
    )
    ok = response.status_code == 200 and "events" in response.json()
    return ok, str(response.status_code)


SENDERS = {
    "chat": _chat,
    "upload": _upload,
    "code": _code,
    "scim_create": _scim_create,
    "scim_patch": _scim_patch,
    "audit_search": _audit_search,
}


async def send(traffic: Traffic, kind: str, process: str, started: float) -> Outcome:
    n = traffic.next_number()
    t0 = time.perf_counter()
    try:
        ok, code = await SENDERS[kind](traffic, traffic.clients[process], n)
        # A 2xx whose body is not what was asked for is an error too, and named apart.
        status = code if ok else (f"bad_body_{code}" if code.startswith("2") else f"http_{code}")
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        ok, status = False, type(exc).__name__
    return Outcome(t0 - started, kind, process, ok, status, (time.perf_counter() - t0) * 1000)


def schedule(minutes: float, rate: float, seed: int) -> list[tuple[float, str, str]]:
    """(offset in s, kind, process) for every request: kinds shuffled in blocks of the mix."""
    block = [kind for kind, weight in MIX.items() for _ in range(weight)]
    rng = random.Random(seed)
    count = int(minutes * 60 * rate)
    kinds: list[str] = []
    while len(kinds) < count:
        rng.shuffle(block)
        kinds += block
    return [(i / rate, kinds[i], PROCESSES[i % len(PROCESSES)]) for i in range(count)]


@dataclass
class Samples:
    rss: dict[str, list[list[float]]] = field(default_factory=dict)
    load: list[list[float]] = field(default_factory=list)


async def sample_memory(
    servers: dict[str, Server], samples: Samples, started: float, stop_at: float
) -> None:
    while time.perf_counter() < stop_at:
        elapsed = time.perf_counter() - started
        for name, server in servers.items():
            memory = server_memory(server)
            if memory["rss_mib"] is not None:
                samples.rss.setdefault(name, []).append([round(elapsed, 1), memory["rss_mib"]])
        samples.load.append([round(elapsed, 1), os.getloadavg()[0]])
        await asyncio.sleep(SAMPLE_EVERY_S)


async def keep_token_fresh(traffic: Traffic, stop_at: float) -> None:
    while True:
        await asyncio.sleep(min(TOKEN_REFRESH_S, max(stop_at - time.perf_counter(), 0) + 1))
        if time.perf_counter() >= stop_at:
            return
        await refresh(traffic, traffic.clients[PROCESSES[0]])


async def run_traffic(
    traffic: Traffic, servers: dict[str, Server], minutes: float, rate: float, seed: int
) -> tuple[dict[str, Any], Samples]:
    plan = schedule(minutes, rate, seed)
    samples = Samples()
    started = time.perf_counter()
    stop_at = started + minutes * 60
    helpers = [
        asyncio.create_task(sample_memory(servers, samples, started, stop_at)),
        asyncio.create_task(keep_token_fresh(traffic, stop_at)),
    ]
    in_flight: set[asyncio.Task[Outcome]] = set()

    def finished(task: asyncio.Task[Outcome]) -> None:
        in_flight.discard(task)
        if not task.cancelled():
            traffic.outcomes.append(task.result())

    late = skipped = max_in_flight = 0
    for offset, kind, process in plan:
        delay = started + offset - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -1.0:
            late += 1
        if len(in_flight) >= MAX_IN_FLIGHT:
            skipped += 1
            continue
        task = asyncio.create_task(send(traffic, kind, process, started))
        in_flight.add(task)
        task.add_done_callback(finished)
        max_in_flight = max(max_in_flight, len(in_flight))
    sent_s = time.perf_counter() - started
    unfinished = 0
    if in_flight:
        _, pending = await asyncio.wait(set(in_flight), timeout=DRAIN_S)
        unfinished = len(pending)
        for task in pending:
            task.cancel()
    for helper in helpers:
        helper.cancel()
    await asyncio.gather(*helpers, return_exceptions=True)
    return {
        "planned": len(plan),
        "sent": len(plan) - skipped,
        "skipped_client_backlog": skipped,
        "late": late,
        "max_in_flight": max_in_flight,
        "unfinished_at_end": unfinished,
        "sending_s": round(sent_s, 1),
        "total_s": round(time.perf_counter() - started, 1),
    }, samples


async def warm_up(traffic: Traffic, process: str) -> None:
    """One request of every kind through one server: imports, pools, keys made on first use."""
    for kind in MIX:
        outcome = await send(traffic, kind, process, time.perf_counter())
        if not outcome.ok:
            raise BenchError(f"warm-up {kind} on {process} failed: {outcome.status}")


# --- results ---------------------------------------------------------------------------------


def per_kind(outcomes: list[Outcome]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for kind in MIX:
        mine = [o for o in outcomes if o.kind == kind]
        errors = Counter(o.status for o in mine if not o.ok)
        result[kind] = {
            "count": len(mine),
            "errors": sum(errors.values()),
            "error_rate": round(sum(errors.values()) / len(mine), 5) if mine else None,
            "errors_by_status": dict(errors),
            "latency_ms": summarise([o.latency_ms for o in mine if o.ok]),
        }
    return result


Timeline = dict[str, list[list[float | None]]]


def latency_timeline(outcomes: list[Outcome], window_s: float) -> Timeline:
    """Per kind, the p50 of the successful requests of each window: [window end s, p50 ms]."""
    timeline: Timeline = {}
    windows = int(max((o.at_s for o in outcomes), default=0) // window_s) + 1
    for kind in MIX:
        points: list[list[float | None]] = []
        for index in range(windows):
            values = [
                o.latency_ms
                for o in outcomes
                if o.kind == kind and o.ok and int(o.at_s // window_s) == index
            ]
            p50 = round(statistics.median(values), 2) if values else None
            points.append([round((index + 1) * window_s, 1), p50])
        timeline[kind] = points
    return timeline


def audit_verify(env: dict[str, str]) -> dict[str, Any]:
    import subprocess

    started = time.perf_counter()
    done = subprocess.run(
        [str(obsigen_bin()), "audit", "verify"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    return {
        "exit_code": done.returncode,
        "intact": done.returncode == 0 and all(line.startswith("OK") for line in lines),
        "summary": " ".join(lines)[:500],
        "stderr": done.stderr[-500:],
        "seconds": round(time.perf_counter() - started, 1),
    }


# --- the run ---------------------------------------------------------------------------------


class Stopped(Exception):
    """SIGTERM or the watchdog alarm: stop everything that was started."""


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise Stopped(f"signal {signum}")


async def _traffic_phase(
    creds: Credentials, servers: dict[str, Server], args: argparse.Namespace, run_id: str
) -> tuple[Traffic, dict[str, Any], Samples, dict[str, Any]]:
    limits = httpx.Limits(max_connections=MAX_IN_FLIGHT, max_keepalive_connections=64)
    async with contextlib.AsyncExitStack() as stack:
        clients = {
            name: await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=server.url, timeout=REQUEST_TIMEOUT_S, limits=limits, trust_env=False
                )
            )
            for name, server in servers.items()
        }
        traffic = Traffic(creds, run_id, clients)
        await login(traffic, clients[PROCESSES[0]])
        for name in servers:
            await warm_up(traffic, name)
        traffic.outcomes.clear()
        memory_start = {name: server_memory(server) for name, server in servers.items()}
        print(f"warm; sending {args.rate}/s for {args.minutes} min", flush=True)
        schedule_info, samples = await run_traffic(
            traffic, servers, args.minutes, args.rate, args.seed
        )
    return traffic, schedule_info, samples, memory_start


def run(args: argparse.Namespace) -> dict[str, Any]:
    import shutil

    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    run_id = uuid.uuid4().hex[:8]
    database = f"obsigen_soak_{run_id}"
    load_start = os.getloadavg()[0]
    servers: dict[str, Server] = {}
    upstream: Server | None = None
    db_created = False
    cache = _redis_client(args.redis_db)
    try:
        cache.flushdb()
        _sql(MARIADB, f"CREATE DATABASE {database} CHARACTER SET utf8mb4")
        db_created = True
        upstream = start_fake_upstream(WORK)
        env = soak_env(WORK / "data", upstream.url, database, args.redis_db)
        creds = provision(env)
        # One after the other: the first creates the keys and files both use.
        for name in PROCESSES:
            servers[name] = start_server(name, env, WORK)
            print(f"server {name} ready at {servers[name].url}", flush=True)
        traffic, schedule_info, samples, memory_start = asyncio.run(
            _traffic_phase(creds, servers, args, run_id)
        )
        memory_end = {name: server_memory(server) for name, server in servers.items()}
        load_end = os.getloadavg()[0]
        for server in servers.values():
            stop(server)
        verify = audit_verify(env)
    finally:
        for server in servers.values():
            stop(server)
        if upstream is not None:
            stop(upstream)
        if db_created and not args.keep_db:
            with contextlib.suppress(Exception):
                _sql(MARIADB, f"DROP DATABASE IF EXISTS {database}")
        with contextlib.suppress(redis.RedisError):
            cache.flushdb()
        cache.close()
    processes = {}
    for name in PROCESSES:
        first, last = memory_start[name], memory_end[name]
        processes[name] = {
            "requests": sum(1 for o in traffic.outcomes if o.process == name),
            "errors": sum(1 for o in traffic.outcomes if o.process == name and not o.ok),
            "rss_start_mib": first["rss_mib"],
            "rss_end_mib": last["rss_mib"],
            "rss_growth_mib": round(last["rss_mib"] - first["rss_mib"], 1),
            "peak_rss_mib": last["peak_rss_mib"],
            "memory_start": first,
            "memory_end": last,
        }
    return {
        "parameters": {
            "minutes": args.minutes,
            "rate_per_s": args.rate,
            "seed": args.seed,
            "mix": MIX,
            "setup": "MariaDB 127.0.0.1:3306 (a fresh database), Redis 127.0.0.1:6379 db "
            f"{args.redis_db}, bwrap code runs, audit to the database, one shared data dir, "
            "the fake upstream through provider openai.",
            "database": database,
            "kept_database": bool(args.keep_db),
        },
        "schedule": schedule_info,
        "kinds": per_kind(traffic.outcomes),
        "processes": processes,
        "audit_verify": verify,
        "load_average": {
            "start": load_start,
            "end": load_end,
            "max_1min": max((s[1] for s in samples.load), default=None),
        },
        "rss_timeline": samples.rss,
        "load_timeline": samples.load,
        # About 20 points whatever the length; never under 10 s of requests per point.
        "latency_window_s": max(10.0, args.minutes * 3),
        "latency_timeline": latency_timeline(traffic.outcomes, max(10.0, args.minutes * 3)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="how long traffic is sent")
    parser.add_argument("--rate", type=float, default=4.0, help="requests per second, in all")
    parser.add_argument("--redis-db", type=int, default=9, help="Redis db the soak owns (emptied)")
    parser.add_argument("--seed", type=int, default=1, help="order of the kinds")
    parser.add_argument("--keep-db", action="store_true", help="keep the MariaDB database")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.rate <= 0:
        parser.error("--minutes and --rate must be positive")
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGALRM, _on_signal)
    # Set-up, the traffic, draining and the final verify: anything beyond this is a hang.
    signal.alarm(int(args.minutes * 60 + DRAIN_S + 900))
    machine = machine_info()
    started = time.monotonic()
    try:
        body = run(args)
    except (BenchError, Stopped) as exc:
        print(f"soak failed: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.alarm(0)
    body["duration_s"] = round(time.monotonic() - started, 1)
    path = write_suite(SUITE, machine, body)
    write_summary()
    for kind, stats in body["kinds"].items():
        latency = stats["latency_ms"]
        print(
            f"{kind:>13}: {stats['count']:6d} requests, {stats['errors']} errors, "
            f"p50 {latency.get('p50', float('nan')):.0f} ms, "
            f"p99 {latency.get('p99', float('nan')):.0f} ms"
        )
    for name, proc in body["processes"].items():
        print(
            f"process {name}: RSS {proc['rss_start_mib']} -> {proc['rss_end_mib']} MiB, "
            f"peak {proc['peak_rss_mib']} MiB"
        )
    verify = body["audit_verify"]
    print(f"audit verify: {'intact' if verify['intact'] else 'FAILED'}: {verify['summary']}")
    print(f"wrote {path.relative_to(REPO)} in {body['duration_s']:.0f} s")
    failed = not verify["intact"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
