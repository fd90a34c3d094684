"""Closed-loop load client: N workers send a fixed number of chat completions, one at a time each.

Runs in its own process so that its CPU use is not charged to the server under test, and is
the same code for every target, so the client's own overhead cancels out in the comparisons.
Prints one JSON object on stdout.

Run: ``python -m bench.load --url http://127.0.0.1:9100 --concurrency 16 --requests 800``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

CHAT_PATH = "/v1/chat/completions"


@dataclass
class Sample:
    total_s: float
    first_chunk_s: float | None = None


@dataclass
class Tally:
    samples: list[Sample] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class LoadSpec:
    url: str
    api_key: str
    model: str
    stream: bool
    concurrency: int
    requests: int
    warmup: int
    request_timeout_s: float
    deadline_s: float


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), ``q`` in [0, 100]."""
    if not sorted_values:
        return float("nan")
    rank = (len(sorted_values) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


def summarise(values_ms: list[float]) -> dict[str, float]:
    ordered = sorted(values_ms)
    if not ordered:
        return {}
    return {
        "min": ordered[0],
        "p50": percentile(ordered, 50),
        "p90": percentile(ordered, 90),
        "p99": percentile(ordered, 99),
        "max": ordered[-1],
        "mean": sum(ordered) / len(ordered),
    }


def request_body(spec: LoadSpec) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": spec.model,
        "messages": [{"role": "user", "content": "hi"}],
    }
    if spec.stream:
        body["stream"] = True
    return body


def _has_content(data: str) -> bool:
    """True when an SSE data payload carries a non-empty content delta."""
    if data == "[DONE]":
        return False
    try:
        choices = json.loads(data).get("choices") or []
    except (ValueError, AttributeError):
        return False
    return any((choice.get("delta") or {}).get("content") for choice in choices)


async def _one_plain(client: httpx.AsyncClient, body: dict[str, Any], tally: Tally) -> None:
    start = time.perf_counter()
    response = await client.post(CHAT_PATH, json=body)
    elapsed = time.perf_counter() - start
    if response.status_code != 200:
        tally.errors[f"http_{response.status_code}"] += 1
        return
    if "choices" not in response.json():
        tally.errors["no_choices"] += 1
        return
    tally.samples.append(Sample(total_s=elapsed))


async def _one_streamed(client: httpx.AsyncClient, body: dict[str, Any], tally: Tally) -> None:
    """Time to the first chunk that carries content, and to the end of the stream."""
    start = time.perf_counter()
    first: float | None = None
    async with client.stream("POST", CHAT_PATH, json=body) as response:
        if response.status_code != 200:
            await response.aread()
            tally.errors[f"http_{response.status_code}"] += 1
            return
        async for line in response.aiter_lines():
            if first is None and line.startswith("data:") and _has_content(line[5:].strip()):
                first = time.perf_counter() - start
    elapsed = time.perf_counter() - start
    if first is None:
        tally.errors["no_content_chunk"] += 1
        return
    tally.samples.append(Sample(total_s=elapsed, first_chunk_s=first))


async def _worker(
    client: httpx.AsyncClient, spec: LoadSpec, tickets: asyncio.Queue[int], tally: Tally
) -> None:
    body = request_body(spec)
    send = _one_streamed if spec.stream else _one_plain
    while True:
        try:
            tickets.get_nowait()
        except asyncio.QueueEmpty:
            return
        try:
            await send(client, body, tally)
        except httpx.HTTPError as exc:
            tally.errors[type(exc).__name__] += 1


async def _phase(client: httpx.AsyncClient, spec: LoadSpec, count: int, tally: Tally) -> None:
    tickets: asyncio.Queue[int] = asyncio.Queue()
    for ticket in range(count):
        tickets.put_nowait(ticket)
    workers = [_worker(client, spec, tickets, tally) for _ in range(spec.concurrency)]
    await asyncio.gather(*workers)


def _client(spec: LoadSpec) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=spec.url,
        headers={"Authorization": f"Bearer {spec.api_key}"},
        timeout=httpx.Timeout(spec.request_timeout_s),
        limits=httpx.Limits(
            max_connections=spec.concurrency, max_keepalive_connections=spec.concurrency
        ),
        # Only loopback is ever a target: never let a proxy variable route traffic elsewhere.
        trust_env=False,
    )


def report(
    spec: LoadSpec, warm: Tally, tally: Tally, wall_s: float, timed_out: bool
) -> dict[str, Any]:
    totals = [round(s.total_s * 1000, 4) for s in tally.samples]
    firsts = [
        round(s.first_chunk_s * 1000, 4) for s in tally.samples if s.first_chunk_s is not None
    ]
    result: dict[str, Any] = {
        "stream": spec.stream,
        "concurrency": spec.concurrency,
        "requests": spec.requests,
        "warmup": spec.warmup,
        "ok": len(tally.samples),
        "errors": dict(tally.errors),
        # The server did this work too: it counts when its CPU time is divided per request.
        "warmup_answered": len(warm.samples) + sum(warm.errors.values()),
        "timed_out": timed_out,
        "wall_s": wall_s,
        "throughput_rps": len(tally.samples) / wall_s if wall_s > 0 else 0.0,
        "latency_ms": summarise(totals),
        # Raw samples let the caller pool several runs before taking percentiles.
        "raw_latency_ms": totals,
    }
    if spec.stream:
        result["first_chunk_ms"] = summarise(firsts)
        result["raw_first_chunk_ms"] = firsts
    return result


async def run(spec: LoadSpec) -> dict[str, Any]:
    async with _client(spec) as client:
        warm = Tally()
        try:
            await asyncio.wait_for(_phase(client, spec, spec.warmup, warm), spec.deadline_s)
        except TimeoutError:
            return {"error": f"warm-up took more than {spec.deadline_s:.0f} s"}
        if spec.warmup and not warm.samples:
            return {"error": f"every warm-up request failed: {dict(warm.errors)}"}
        tally = Tally()
        start = time.perf_counter()
        try:
            await asyncio.wait_for(_phase(client, spec, spec.requests, tally), spec.deadline_s)
        except TimeoutError:
            # Report what finished rather than nothing; the flag marks the run as incomplete.
            return report(spec, warm, tally, time.perf_counter() - start, timed_out=True)
        return report(spec, warm, tally, time.perf_counter() - start, timed_out=False)


def parse_args(argv: list[str] | None = None) -> LoadSpec:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="base URL, e.g. http://127.0.0.1:9100")
    parser.add_argument("--api-key", default="bench")
    parser.add_argument("--model", default="fake-model")
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--request-timeout", type=float, default=30.0)
    parser.add_argument("--deadline", type=float, default=180.0, help="seconds for the run")
    args = parser.parse_args(argv)
    return LoadSpec(
        url=args.url,
        api_key=args.api_key,
        model=args.model,
        stream=args.stream,
        concurrency=args.concurrency,
        requests=args.requests,
        warmup=args.warmup,
        request_timeout_s=args.request_timeout,
        deadline_s=args.deadline,
    )


def main(argv: list[str] | None = None) -> None:
    spec = parse_args(argv)
    result = asyncio.run(run(spec))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
