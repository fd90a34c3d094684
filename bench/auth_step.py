"""Cost of authenticating one request: ``.venv/bin/python -m bench.auth_step [--quick]``.

Measured in one process, one after another on one event loop, as the web edge runs them:

- ``verify``: the access token's signature and claims alone (no I/O);
- ``jwt (memory + sqlite)``: the whole step of the embedded default: verify, session touch in
  process, roles from SQLite;
- ``jwt (redis + mariadb)``: the same with the session in Redis and roles in MariaDB (each a
  loopback round trip), as a scaled-out deployment runs it;
- ``api key (sqlite|mariadb)``: the API-key path, for comparison.

Writes ``bench/results/auth_step.json``; median and p99 in microseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import text

from bench.report import machine_info, write_suite
from bench.timing import time_async
from obsigen.authz.permissions import Role
from obsigen.config import Settings, ensure_data_dir
from obsigen.db.engine import make_engine
from obsigen.db.migrate import upgrade_to_head
from obsigen.identity.apikeys import create_api_key
from obsigen.identity.tenants import create_tenant
from obsigen.identity.users import create_user
from obsigen.services import Services, build_services

MARIADB = "mysql+asyncmy://root@127.0.0.1:3306/"
REDIS = "redis://127.0.0.1:6379/0"


def _open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


async def _measure(services: Services, label: str, rounds: int) -> dict[str, dict[str, float]]:
    auth = services.auth
    await auth.start()
    async with services.sessions.begin() as session:
        tenant = await create_tenant(session, f"bench-{uuid.uuid4().hex[:8]}")
        user = (await create_user(session, tenant, "bench@example.eu", Role.MEMBER, None)).user
        key = (
            await create_api_key(session, tenant, "bench", Role.MEMBER, None, max_age=_max_age())
        ).key
    record, _ = await auth.manager.start(tenant_id=tenant.id, user_id=user.id, amr=["pwd"])
    token, _ = await auth.tokens.issue(
        subject=user.id,
        tenant_id=tenant.id,
        session_id=record.session_id,
        amr=record.amr,
        auth_time=record.auth_time,
        session_expires_at=record.expires_at,
    )

    async def full() -> None:
        assert await auth.authenticator.authenticate(token) is not None

    async def api_key() -> None:
        from obsigen.identity.apikeys import authenticate_api_key

        async with services.sessions() as session:
            assert await authenticate_api_key(session, key) is not None

    return {
        "verify": await time_async(lambda: auth.tokens.verify(token), rounds),
        f"jwt ({label})": await time_async(full, rounds),
        f"api key ({label.split(' + ')[1]})": await time_async(api_key, rounds),
    }


def _max_age() -> Any:
    from datetime import timedelta

    return timedelta(days=365)


async def _mariadb_url() -> tuple[str, str]:
    name = f"obsigen_bench_{uuid.uuid4().hex[:8]}"
    server = make_engine(MARIADB)
    async with server.begin() as conn:
        await conn.execute(text(f"CREATE DATABASE {name} CHARACTER SET utf8mb4"))
    await server.dispose()
    return f"{MARIADB}{name}?charset=utf8mb4", name


async def _drop(name: str) -> None:
    server = make_engine(MARIADB)
    async with server.begin() as conn:
        await conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
    await server.dispose()


async def _run(settings: Settings, label: str, rounds: int) -> dict[str, dict[str, float]]:
    ensure_data_dir(settings)
    engine = make_engine(settings.database_url)
    await upgrade_to_head(engine)
    await engine.dispose()
    services = build_services(settings)
    try:
        return await _measure(services, label, rounds)
    finally:
        await services.aclose()


async def main_async(quick: bool) -> dict[str, Any]:
    rounds = 300 if quick else 2000
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        embedded = Settings.model_validate({"paths": {"data_dir": Path(tmp) / "embedded"}})
        results.update(await _run(embedded, "memory + sqlite", rounds))
        if _open(3306) and _open(6379):
            url, name = await _mariadb_url()
            try:
                scaled = Settings.model_validate(
                    {
                        "paths": {"data_dir": Path(tmp) / "scaled"},
                        "storage": {"database_url": url, "redis_url": REDIS},
                    }
                )
                measured = await _run(scaled, "redis + mariadb", rounds)
                measured.pop("verify")
                results.update(measured)
            finally:
                await _drop(name)
    return {"rounds": rounds, "operations": results}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    body = asyncio.run(main_async(args.quick))
    path = write_suite("auth_step", machine_info(), body)
    print("| step | median µs | p99 µs |")
    print("|---|---:|---:|")
    for name, stats in body["operations"].items():
        print(f"| {name} | {stats['median_us']:.0f} | {stats['p99_us']:.0f} |")
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
