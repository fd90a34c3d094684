"""Audit chain throughput: events/s appended with chaining and signing, on SQLite and MariaDB.

    python -m bench.audit_chain [--mariadb mysql+asyncmy://root@127.0.0.1:3306/]

Writes bench/results/audit_chain.json (``bench.report`` layout). Sequential appends are one
transaction per event (a quiet server); concurrent appends show group commit (a busy one).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import text

from bench.report import machine_info, write_suite
from obsigen.audit.db_store import CheckpointPolicy, DatabaseAuditSink
from obsigen.audit.events import AuditEvent
from obsigen.audit.jwk import verify_with_jwk
from obsigen.audit.signing import software_signer, trusted_keys
from obsigen.audit.verify import verify_tenant
from obsigen.db.engine import make_engine
from obsigen.db.migrate import upgrade_to_head


def event(tenant_id: str, n: int) -> AuditEvent:
    return AuditEvent(
        type="model.response",
        tenant_id=tenant_id,
        actor={"kind": "apikey", "id": uuid.uuid4().hex},
        outcome="success",
        interaction_id=uuid.uuid4().hex,
        data={
            "n": n,
            "model": "fake-model",
            "duration_ms": 12,
            "content_digest": "sha256:" + "a" * 64,
        },
    )


async def measure(url: str, data_dir: Path, sequential: int, concurrent: int) -> dict[str, Any]:
    signer = software_signer(data_dir)
    sink = DatabaseAuditSink(
        make_engine(url), lambda: signer, CheckpointPolicy(every=100), owns_engine=True
    )
    tenant = uuid.uuid4().hex
    try:
        latencies = []
        started = time.perf_counter()
        for n in range(sequential):
            t0 = time.perf_counter()
            await sink.emit(event(tenant, n))
            latencies.append(time.perf_counter() - t0)
        sequential_s = time.perf_counter() - started
        started = time.perf_counter()
        await asyncio.gather(*(sink.emit(event(tenant, n)) for n in range(concurrent)))
        concurrent_s = time.perf_counter() - started
        started = time.perf_counter()
        report = await verify_tenant(sink.sessions, tenant, await trusted_keys(data_dir, signer))
        verify_s = time.perf_counter() - started
        assert report.intact, report.summary()
    finally:
        await sink.aclose()
    latencies.sort()
    return {
        "sequential_events_per_s": round(sequential / sequential_s, 1),
        "append_latency_ms_p50": round(statistics.median(latencies) * 1000, 2),
        "append_latency_ms_p99": round(latencies[int(len(latencies) * 0.99)] * 1000, 2),
        "concurrent_events_per_s": round(concurrent / concurrent_s, 1),
        "verify_events_per_s": round(report.events / verify_s, 1),
        "checkpoints": report.checkpoints,
    }


def signing_cost(rounds: int = 200) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as directory:
        signer = software_signer(Path(directory))
    payload = b"x" * 200
    started = time.perf_counter()
    for _ in range(rounds):
        signature = signer.sign_now(payload)
    sign_ms = (time.perf_counter() - started) / rounds * 1000
    started = time.perf_counter()
    for _ in range(rounds):
        verify_with_jwk(signer.jwk, payload, signature)
    verify_ms = (time.perf_counter() - started) / rounds * 1000
    return {"sign_ms": round(sign_ms, 2), "verify_ms": round(verify_ms, 2)}


async def sqlite_url(directory: Path) -> str:
    url = f"sqlite+aiosqlite:///{directory / 'bench.db'}"
    engine = make_engine(url)
    await upgrade_to_head(engine)
    await engine.dispose()
    return url


async def mariadb_url(server: str) -> tuple[str, str]:
    name = f"obsigen_bench_{uuid.uuid4().hex[:8]}"
    admin = make_engine(server)
    async with admin.begin() as conn:
        await conn.execute(text(f"CREATE DATABASE {name} CHARACTER SET utf8mb4"))
    await admin.dispose()
    url = f"{server}{name}?charset=utf8mb4"
    engine = make_engine(url)
    await upgrade_to_head(engine)
    await engine.dispose()
    return url, name


async def main(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"ed25519_software": signing_cost()}
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory)
        results["sqlite"] = await measure(
            await sqlite_url(path), path, args.sequential, args.concurrent
        )
        if args.mariadb:
            url, name = await mariadb_url(args.mariadb)
            try:
                results["mariadb"] = await measure(url, path, args.sequential, args.concurrent)
            finally:
                admin = make_engine(args.mariadb)
                async with admin.begin() as conn:
                    await conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
                await admin.dispose()
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mariadb", default="", help="server URL ending in '/'")
    parser.add_argument("--sequential", type=int, default=500)
    parser.add_argument("--concurrent", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="a fifth of the events")
    arguments = parser.parse_args()
    if arguments.quick:
        arguments.sequential, arguments.concurrent = 100, 400
    machine = machine_info()
    results = asyncio.run(main(arguments))
    parameters = {"sequential": arguments.sequential, "concurrent": arguments.concurrent}
    path = write_suite("audit_chain", machine, {"parameters": parameters, **results})
    print(json.dumps(results, indent=2))
    print(f"written to {path}")
