"""Suite ``proxy_latency``: what Obsigen and LiteLLM add on top of the same fast upstream.

Each scenario runs against every target in rounds, rotating the order each round, so that a
burst of noise from other work on the machine lands on all targets alike; the samples of all
rounds are pooled before percentiles are taken.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

from bench.cputime import session_cpu_s
from bench.load import summarise
from bench.procs import BenchError, Server, server_memory, stop
from bench.targets import (
    LITELLM_REQUIREMENT,
    REPO,
    Target,
    litellm_version,
    start_fake_upstream,
    start_litellm,
    start_obsigen,
)

SUITE = "proxy_latency"
RUN_DEADLINE_CAP_S = 120.0


@dataclass(frozen=True)
class Scenario:
    name: str
    stream: bool
    concurrency: int
    requests: int  # in all rounds together
    warmup: int  # per round: each round is a new client with new connections


# The c64 scenarios come last: when the budget runs out, the long-standing ones are measured.
FULL = (
    Scenario("plain_c1", stream=False, concurrency=1, requests=200, warmup=20),
    Scenario("plain_c16", stream=False, concurrency=16, requests=800, warmup=64),
    Scenario("stream_c1", stream=True, concurrency=1, requests=100, warmup=10),
    Scenario("stream_c16", stream=True, concurrency=16, requests=400, warmup=32),
    Scenario("plain_c64", stream=False, concurrency=64, requests=960, warmup=128),
    Scenario("stream_c64", stream=True, concurrency=64, requests=480, warmup=64),
)
QUICK = tuple(
    Scenario(
        s.name,
        s.stream,
        s.concurrency,
        max(s.requests // 10, 16, 2 * s.concurrency),
        max(s.warmup // 4, 2),
    )
    for s in FULL
)


@dataclass
class Pooled:
    """The rounds of one scenario against one target, added up."""

    latency_ms: list[float]
    first_chunk_ms: list[float]
    errors: dict[str, int]
    wall_s: float = 0.0
    server_cpu_s: float = 0.0
    served: int = 0  # every request the server answered, warm-up and errors included
    timed_out: bool = False

    def add(self, run: dict[str, Any], cpu_s: float) -> None:
        self.served += run.get("ok", 0) + run.get("warmup_answered", 0)
        self.served += sum(run.get("errors", {}).values())
        self.latency_ms += run.get("raw_latency_ms", [])
        self.first_chunk_ms += run.get("raw_first_chunk_ms", [])
        for kind, count in run.get("errors", {}).items():
            self.errors[kind] = self.errors.get(kind, 0) + count
        if "error" in run:
            self.errors[run["error"]] = self.errors.get(run["error"], 0) + 1
        self.wall_s += run.get("wall_s", 0.0)
        self.server_cpu_s += cpu_s
        self.timed_out = self.timed_out or bool(run.get("timed_out"))

    def summary(self, stream: bool) -> dict[str, Any]:
        ok = len(self.latency_ms)
        result: dict[str, Any] = {
            "ok": ok,
            "errors": self.errors,
            "timed_out": self.timed_out,
            "throughput_rps": ok / self.wall_s if self.wall_s else 0.0,
            "server_cpu_ms_per_request": (
                1000 * self.server_cpu_s / self.served if self.served else None
            ),
            "latency_ms": summarise(self.latency_ms),
        }
        if stream:
            result["first_chunk_ms"] = summarise(self.first_chunk_ms)
        return result


def _load_command(
    target: Target, scenario: Scenario, requests: int, deadline_s: float
) -> list[str]:
    cmd = [sys.executable, "-m", "bench.load", "--url", target.url, "--api-key", target.api_key]
    cmd += ["--concurrency", str(scenario.concurrency), "--requests", str(requests)]
    cmd += ["--warmup", str(scenario.warmup), "--deadline", str(deadline_s)]
    return [*cmd, "--stream"] if scenario.stream else cmd


def run_load(
    target: Target, scenario: Scenario, requests: int, deadline_s: float
) -> dict[str, Any]:
    """One client process against one target; what it printed, parsed."""
    cmd = _load_command(target, scenario, requests, deadline_s)
    try:
        # Twice the deadline: warm-up and measurement each get one.
        done = subprocess.run(
            cmd, cwd=REPO, capture_output=True, text=True, timeout=2 * deadline_s + 30, check=False
        )
    except subprocess.TimeoutExpired:
        return {"error": "load client did not finish", "timed_out": True}
    if done.returncode != 0:
        return {"error": f"load client exited {done.returncode}: {done.stderr[-500:]}"}
    try:
        parsed: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        return {"error": f"load client printed no JSON: {done.stdout[-500:]!r}"}
    return parsed


@dataclass(frozen=True)
class Meter:
    """CPU of the process that serves a target, less what it burns when idle."""

    session: int
    idle_cpu_per_s: float

    def measure(self, work: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], float]:
        cpu_before, started = session_cpu_s(self.session), time.monotonic()
        result = work()
        elapsed = time.monotonic() - started
        used = session_cpu_s(self.session) - cpu_before - self.idle_cpu_per_s * elapsed
        return result, max(used, 0.0)


def idle_meters(targets: list[Target], upstream: Server, sample_s: float = 3.0) -> dict[str, Meter]:
    """Each server's CPU per second while nothing calls it (timers, background tasks)."""
    # The direct target's own server is the upstream.
    sessions = {t.name: (t.server or upstream).process.pid for t in targets}
    before = {name: session_cpu_s(sid) for name, sid in sessions.items()}
    time.sleep(sample_s)
    return {
        name: Meter(sid, (session_cpu_s(sid) - before[name]) / sample_s)
        for name, sid in sessions.items()
    }


def _run_deadline(suite_deadline: float) -> float | None:
    """Seconds one load run may take (warm-up and measurement each), or None when time is up."""
    remaining = suite_deadline - time.monotonic()
    # The client process is killed at twice its deadline plus 30 s: keep that inside the budget.
    deadline = min(RUN_DEADLINE_CAP_S, (remaining - 30) / 2)
    return deadline if deadline >= 5 else None


def run_scenario(
    scenario: Scenario,
    targets: list[Target],
    meters: dict[str, Meter],
    rounds: int,
    suite_deadline: float,
) -> dict[str, Pooled] | None:
    """The scenario's rounds against every target; None when the suite ran out of time."""
    pooled = {t.name: Pooled([], [], {}) for t in targets}
    per_round = max(scenario.requests // rounds, 1)
    for round_no in range(rounds):
        shift = round_no % len(targets)
        for target in targets[shift:] + targets[:shift]:
            deadline = _run_deadline(suite_deadline)
            if deadline is None:
                return None
            run, cpu_s = meters[target.name].measure(
                partial(run_load, target, scenario, per_round, deadline)
            )
            pooled[target.name].add(run, cpu_s)
            if "error" in run:
                print(f"  {scenario.name} {target.name}: {run['error']}", flush=True)
    return pooled


def added(target: dict[str, Any], direct: dict[str, Any], key: str) -> dict[str, float]:
    return {q: target[key][q] - direct[key][q] for q in ("p50", "p90", "p99") if q in direct[key]}


def ratio(numerator: dict[str, float], denominator: dict[str, float]) -> dict[str, float]:
    return {q: numerator[q] / denominator[q] for q in numerator if denominator.get(q, 0) > 0}


def derive(scenario: Scenario, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Added latency over direct for each proxy, and Obsigen / LiteLLM ratios."""
    direct = results.get("direct")
    if direct is None or not direct["latency_ms"]:
        return {}
    keys = ["latency_ms", "first_chunk_ms"] if scenario.stream else ["latency_ms"]
    derived: dict[str, Any] = {}
    for key in keys:
        adds = {
            name: added(res, direct, key)
            for name, res in results.items()
            if name != "direct" and res[key]
        }
        entry: dict[str, Any] = {f"{name}_added": value for name, value in adds.items()}
        if "obsigen" in adds and "litellm" in adds:
            entry["ratio_added_obsigen_over_litellm"] = ratio(adds["obsigen"], adds["litellm"])
            entry["ratio_total_obsigen_over_litellm"] = ratio(
                results["obsigen"][key], results["litellm"][key]
            )
        derived[key] = entry
    return derived


def _start_proxies(
    workdir: Path, upstream: Server, with_litellm: bool, servers: list[Server]
) -> tuple[list[Target], dict[str, str]]:
    """Start what can be started; ``servers`` gets each one at once, for the caller to stop."""
    targets: list[Target] = []
    unavailable: dict[str, str] = {}
    starters = [("obsigen", start_obsigen)]
    if with_litellm:
        starters.append(("litellm", start_litellm))
    for name, starter in starters:
        started = time.monotonic()
        try:
            target = starter(workdir, upstream.url)
        except BenchError as exc:
            unavailable[name] = str(exc)
            print(f"{name} unavailable: {exc}", flush=True)
            continue
        print(f"{name} ready in {time.monotonic() - started:.1f} s at {target.url}", flush=True)
        if target.server is not None:
            servers.append(target.server)
        targets.append(target)
    return targets, unavailable


def max_rps(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Each target's best non-streamed throughput: its one server process, saturated.

    The clients are a closed loop, so at the highest concurrency the server never waits for
    work; the best of the non-streamed scenarios is what one worker process sustains.
    """
    best: dict[str, Any] = {}
    for scenario, by_target in results.items():
        if scenario.startswith("stream"):
            continue
        for target, res in by_target.items():
            errors = sum(res["errors"].values())
            if res["ok"] and (target not in best or res["throughput_rps"] > best[target]["rps"]):
                best[target] = {"rps": res["throughput_rps"], "scenario": scenario,
                                "errors": errors}  # fmt: skip
    return best


def _memory(targets: list[Target], upstream: Server) -> dict[str, Any]:
    return {t.name: server_memory(t.server or upstream) for t in targets}


def _parameters(scenarios: tuple[Scenario, ...], rounds: int, budget_s: float) -> dict[str, Any]:
    return {
        "scenarios": [asdict(s) for s in scenarios],
        "rounds": rounds,
        "budget_s": budget_s,
        "request": {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]},
        "obsigen": "embedded defaults (SQLite, file audit, in-process limits) with the rate "
        "limits raised to 1000000/minute",
        "litellm": {"requirement": LITELLM_REQUIREMENT, "mode": "master key, no database"},
    }


def run_suite(
    workdir: Path, quick: bool, rounds: int, with_litellm: bool, budget_s: float
) -> dict[str, Any]:
    scenarios = QUICK if quick else FULL
    body: dict[str, Any] = {
        "parameters": _parameters(scenarios, rounds, budget_s),
        "unavailable": {},
        "skipped_for_time": [],
        "results": {},
        "derived": {},
    }
    servers: list[Server] = []
    try:
        upstream = start_fake_upstream(workdir)
        servers.append(upstream)
        proxies, body["unavailable"] = _start_proxies(workdir, upstream, with_litellm, servers)
        if any(t.name == "litellm" for t in proxies):
            body["parameters"]["litellm"]["version"] = litellm_version()
        targets = [Target("direct", upstream.url, "bench", None), *proxies]
        meters = idle_meters(targets, upstream)
        # The budget is for measuring: a first run's LiteLLM install is bounded on its own.
        suite_deadline = time.monotonic() + budget_s
        body["idle_cpu_ms_per_s"] = {n: 1000 * m.idle_cpu_per_s for n, m in meters.items()}
        body["memory_at_start"] = _memory(targets, upstream)
        for scenario in scenarios:
            print(f"scenario {scenario.name} ({', '.join(t.name for t in targets)})", flush=True)
            pooled = run_scenario(scenario, targets, meters, rounds, suite_deadline)
            if pooled is None:
                body["skipped_for_time"].append(scenario.name)
                continue
            results = {name: p.summary(scenario.stream) for name, p in pooled.items()}
            body["results"][scenario.name] = results
            body["derived"][scenario.name] = derive(scenario, results)
        # VmHWM is the peak over the server's whole life: every scenario above is inside it.
        body["memory_at_end"] = _memory(targets, upstream)
        body["max_rps_per_worker"] = max_rps(body["results"])
    finally:
        for server in reversed(servers):
            stop(server)
    return body
