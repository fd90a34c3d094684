"""What the audit trail adds to a chat turn: ``.venv/bin/python -m bench.audit_turn [--quick]``.

Three apps in one process, each on its own SQLite database, against the same fake upstream
(a subprocess on loopback), their turns interleaved one by one so machine noise hits all
alike:

- ``no audit``: no sinks at all (not a supported configuration; the baseline);
- ``database + file``: the default record (hash-chained table, signed checkpoints) and copy;
- ``+ SIEM down``: the default plus an OTLP sink whose collector is not running, so every
  event goes to its disk spool: what a dead SIEM costs a turn.

Reported: per-turn latency p50/p99 in ms and the difference to the baseline. Writes
``bench/results/audit_turn.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from bench.procs import free_port, stop
from bench.report import machine_info, write_suite
from bench.targets import start_fake_upstream
from obsigen.app import create_app
from obsigen.authz.permissions import Role
from obsigen.config import Settings, ensure_data_dir
from obsigen.db.engine import make_engine
from obsigen.db.migrate import upgrade_to_head
from obsigen.identity.apikeys import create_api_key
from obsigen.identity.tenants import create_tenant
from obsigen.services import build_services


def _settings(data_dir: Path, upstream: str, sinks: list[str]) -> Settings:
    return Settings.model_validate(
        {
            "paths": {"data_dir": data_dir},
            "inference": {"provider": "openai", "base_url": upstream + "/v1", "region": "de"},
            "audit": {"sinks": sinks},
            # Hundreds of turns by one key: limits would answer most of them with 429.
            "ratelimit": dict.fromkeys(
                ("default", "principal", "tenant", "token_budget_tenant", "token_budget_user"),
                "unlimited",
            ),
        }
    )


@contextlib.asynccontextmanager
async def _client(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    ensure_data_dir(settings)
    engine = make_engine(settings.database_url)
    await upgrade_to_head(engine)
    await engine.dispose()
    services = build_services(settings)
    app = create_app(settings, services)
    async with app.router.lifespan_context(app):
        async with services.sessions.begin() as session:
            tenant = await create_tenant(session, "bench")
            key = (await create_api_key(session, tenant, "bench", Role.MEMBER, None)).key
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            yield client, key
    await services.aclose()


async def _turn(client: httpx.AsyncClient, key: str) -> float:
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "Hello there"}]}
    start = time.perf_counter()
    response = await client.post(
        "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
    )
    elapsed = time.perf_counter() - start
    response.raise_for_status()
    return elapsed * 1000


def _stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered), 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 2),
        "n": len(ordered),
    }


async def main_async(turns: int, workdir: Path) -> dict[str, Any]:
    upstream = start_fake_upstream(workdir)
    dead_collector = f"otlp+http://127.0.0.1:{free_port()}/v1/logs?timeout_s=0.2"
    variants = {
        "no audit": [],
        "database + file": ["database", "file"],
        "+ SIEM down": ["database", "file", dead_collector],
    }
    try:
        async with contextlib.AsyncExitStack() as stack:
            clients = {
                name: await stack.enter_async_context(
                    _client(_settings(workdir / str(i), upstream.url, sinks))
                )
                for i, (name, sinks) in enumerate(variants.items())
            }
            samples: dict[str, list[float]] = {name: [] for name in variants}
            for client, key in clients.values():  # warm-up: imports, pools, first keys
                for _ in range(20):
                    await _turn(client, key)
            for _ in range(turns):
                for name, (client, key) in clients.items():
                    samples[name].append(await _turn(client, key))
    finally:
        stop(upstream)
    results = {name: _stats(values) for name, values in samples.items()}
    base = results["no audit"]
    for stats in results.values():
        stats["added_p50_ms"] = round(stats["p50_ms"] - base["p50_ms"], 2)
        stats["added_p99_ms"] = round(stats["p99_ms"] - base["p99_ms"], 2)
    return {"turns": turns, "variants": results}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        body = asyncio.run(main_async(60 if args.quick else 300, Path(tmp)))
    path = write_suite("audit_turn", machine_info(), body)
    print("| audit sinks | turn p50 ms | p99 ms | added p50 | added p99 |")
    print("|---|---:|---:|---:|---:|")
    for name, s in body["variants"].items():
        cells = [s["p50_ms"], s["p99_ms"], s["added_p50_ms"], s["added_p99_ms"]]
        print(f"| {name} | " + " | ".join(str(c) for c in cells) + " |")
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
