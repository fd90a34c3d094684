"""Suite ``sandbox``: ``print(1)`` through ``POST /api/v1/code/run``, gVisor and bwrap.

For each backend this host can run, a fresh server per mode: *cold* (``pool_size = 0``: every
run creates its sandbox on the request path) and *warm* (a pool of created, started, never-used
sandboxes). Sequential requests give p50/p99 wall time as the client sees it; in the warm mode
the client pauses between requests so the pool can refill, as it would between real users.
Then four clients at once measure sustained runs/s (the pool cannot keep up there: this is the
cost of making sandboxes). Every sandbox is used once in every mode.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.load import summarise
from bench.procs import LOOPBACK, BenchError, Server, free_port, start_ready, stop
from bench.targets import REPO, obsigen_bin, obsigen_env, provision_obsigen

SUITE = "sandbox"
CODE = {"language": "python", "code": "print(1)"}


@dataclass(frozen=True)
class Plan:
    sequential: int
    warm_pause_s: float
    concurrent: int
    concurrency: int = 4
    pool_size: int = 4


FULL = Plan(sequential=60, warm_pause_s=0.4, concurrent=60)
QUICK = Plan(sequential=12, warm_pause_s=0.4, concurrent=12)


def _available_backends() -> dict[str, str]:
    """Backend name -> "" when it runs here, else why not."""
    from obsigen.sandbox.detect import detect

    return {
        name: "" if detect(name).backend == name else detect(name).reason  # type: ignore[arg-type]
        for name in ("gvisor", "bwrap")
    }


def _start(workdir: Path, backend: str, pool_size: int, concurrency: int) -> tuple[Server, str]:
    data = workdir / f"{backend}-pool{pool_size}"
    # The chat upstream is never called here; any loopback URL satisfies the settings.
    env = obsigen_env(data, f"http://{LOOPBACK}:9")
    env |= {
        "OBSIGEN_SANDBOX__BACKEND": backend,
        "OBSIGEN_SANDBOX__POOL_SIZE": str(pool_size),
        "OBSIGEN_SANDBOX__CONCURRENCY": str(concurrency),
        "OBSIGEN_SANDBOX__QUEUE_TIMEOUT_S": "60",
    }
    key = provision_obsigen(env)
    port = free_port()
    server = start_ready(
        f"Obsigen ({backend}, pool {pool_size})",
        [str(obsigen_bin()), "serve", "--host", LOOPBACK, "--port", str(port)],
        env=env,
        log_path=workdir / f"obsigen-{backend}-pool{pool_size}.log",
        url=f"http://{LOOPBACK}:{port}",
        cwd=REPO,
        # /readyz also wants the chat model, which this suite never calls.
        ready_path="/healthz",
        timeout_s=120,
    )
    return server, key


async def _one(client: httpx.AsyncClient, key: str) -> float:
    started = time.perf_counter()
    response = await client.post(
        "/api/v1/code/run", json=CODE, headers={"Authorization": f"Bearer {key}"}
    )
    elapsed_ms = (time.perf_counter() - started) * 1000
    if response.status_code != 200 or response.json().get("stdout") != "1\n":
        raise BenchError(f"run failed: {response.status_code} {response.text[:300]}")
    return elapsed_ms


async def _sequential(url: str, key: str, count: int, pause_s: float) -> list[float]:
    async with httpx.AsyncClient(base_url=url, timeout=60, trust_env=False) as client:
        await _one(client, key)  # connection set-up, first-use work in the server
        await asyncio.sleep(pause_s)
        samples = []
        for _ in range(count):
            samples.append(await _one(client, key))
            await asyncio.sleep(pause_s)
        return samples


async def _concurrent(url: str, key: str, count: int, concurrency: int) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=url, timeout=120, trust_env=False, limits=limits
    ) as client:
        queue = list(range(count))
        samples: list[float] = []

        async def worker() -> None:
            while queue:
                queue.pop()
                samples.append(await _one(client, key))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall_s = time.perf_counter() - started
    return {"runs": len(samples), "wall_s": wall_s, "runs_per_s": len(samples) / wall_s,
            "latency_ms": summarise(samples)}  # fmt: skip


def _measure_backend(workdir: Path, backend: str, plan: Plan) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for mode, pool_size in (("cold", 0), ("warm", plan.pool_size)):
        server, key = _start(workdir, backend, pool_size, plan.concurrency)
        try:
            time.sleep(2.0 if pool_size else 0.5)  # let the pool fill
            pause = plan.warm_pause_s if pool_size else 0.05
            samples = asyncio.run(_sequential(server.url, key, plan.sequential, pause))
            result[mode] = {"sequential_ms": summarise(samples), "pause_s": pause}
            result[mode]["concurrent"] = asyncio.run(
                _concurrent(server.url, key, plan.concurrent, plan.concurrency)
            )
        finally:
            stop(server)
        print(
            f"  {backend} {mode}: p50 {result[mode]['sequential_ms']['p50']:.0f} ms, "
            f"c{plan.concurrency} {result[mode]['concurrent']['runs_per_s']:.1f} runs/s",
            flush=True,
        )
    return result


def run_suite(workdir: Path, quick: bool) -> dict[str, Any]:
    plan = QUICK if quick else FULL
    body: dict[str, Any] = {"parameters": asdict(plan) | {"code": CODE}, "unavailable": {}}
    results: dict[str, Any] = {}
    for backend, problem in _available_backends().items():
        if problem:
            body["unavailable"][backend] = problem
            print(f"{backend} unavailable: {problem}", flush=True)
            continue
        results[backend] = _measure_backend(workdir, backend, plan)
    body["results"] = results
    return body


def _ms(stats: dict[str, float] | None, q: str) -> str:
    return "–" if not stats or q not in stats else f"{stats[q]:.0f}"


def sandbox_markdown(doc: dict[str, Any]) -> str:
    params = doc.get("parameters", {})
    lines = [
        "## Code execution: `print(1)` through `POST /api/v1/code/run` (ms)",
        "",
        "| backend | mode | p50 | p99 | runs/s at concurrency "
        f"{params.get('concurrency', 4)} | p50 at that concurrency |",
        "|---|---|---|---|---|---|",
    ]
    for backend, modes in doc.get("results", {}).items():
        for mode, res in modes.items():
            seq, conc = res["sequential_ms"], res["concurrent"]
            lines.append(
                f"| {backend} | {mode} | {_ms(seq, 'p50')} | {_ms(seq, 'p99')} | "
                f"{conc['runs_per_s']:.1f} | {_ms(conc['latency_ms'], 'p50')} |"
            )
    lines += [
        "",
        f"cold: every run makes its sandbox; warm: a pool of {params.get('pool_size')} made "
        f"ahead, the client pausing {params.get('warm_pause_s')} s between sequential runs. "
        "Each sandbox is used once in both.",
    ]
    for name, reason in doc.get("unavailable", {}).items():
        lines.append(f"**{name} was not measured:** {reason}")
    return "\n".join(lines)
