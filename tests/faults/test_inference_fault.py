"""The model upstream (tests/fakes/openai_upstream.py in a process of its own) killed, and
frozen so that it hangs, under streamed and unstreamed chat: 502 ``inference-failed`` and 504
``inference-timeout`` (in-band for a stream already under way), the user's message kept and
marked failed, and the next turn answered once the upstream is back."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from obsigen.web.problems import MEDIA_TYPE, PROBLEM_BASE
from tests.fakes.private_redis import free_port, stop_process, wait_for_port
from tests.faults.conftest import (
    REPO,
    Deployment,
    Outcome,
    Traffic,
    assert_chats_stored,
    assert_clear_errors,
    base_config,
    chat_once,
    deployed,
    statuses,
    until,
)

TIMEOUT_S = 2.0
MAX_RETRIES = 1
# Each attempt waits at most timeout_s for bytes; one retry with its backoff; then slack for
# the loaded machine.
BOUND_S = (MAX_RETRIES + 1) * TIMEOUT_S + 2 + 6
FAILED = {502: {"inference-failed"}, 504: {"inference-timeout"}}
ANSWER = " ".join(f"word{i}" for i in range(16))

# The fake upstream as a process, so that it can be SIGKILLed and SIGSTOPped.
SERVE = """
import sys, uvicorn
from tests.fakes.openai_upstream import FakeUpstream
fake = FakeUpstream(answer=sys.argv[2], chunk_delay_s=0.03)
uvicorn.run(fake.app(), host="127.0.0.1", port=int(sys.argv[1]), log_level="critical",
            lifespan="off", access_log=False, http="h11", ws="none")
"""


@dataclass
class UpstreamProcess:
    port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", SERVE, str(self.port), ANSWER],
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for_port(self.port, self.proc, 30, self.log)

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        if sig == signal.SIGKILL:
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)
            stop_process(self.proc)


@pytest.fixture
def upstream_process(tmp_path: Path) -> Iterator[UpstreamProcess]:
    upstream = UpstreamProcess(free_port(), tmp_path / "upstream.log")
    upstream.start()
    try:
        yield upstream
    finally:
        upstream.stop()


async def chat_stream_once(client: httpx.AsyncClient, d: Deployment, n: int) -> Outcome:
    """A streamed chat, folded into the shape of an unstreamed one: content and conversation
    for a whole answer, or the in-band error as a problem."""
    content = f"fault stream {n} {uuid.uuid4().hex[:8]}"
    body = {
        "model": "fake-model",
        "stream": True,
        "messages": [{"role": "user", "content": content}],
    }
    started = time.monotonic()
    outcome = Outcome("chat", n, content, started, 0.0)
    text: list[str] = []
    try:
        async with client.stream(
            "POST", f"{d.server.base_url}/v1/chat/completions", json=body, headers=d.headers
        ) as response:
            outcome.status = response.status_code
            outcome.media_type = response.headers.get("content-type", "").split(";")[0]
            if response.status_code != 200:
                outcome.body = json.loads(await response.aread())
            else:
                conversation_id, error, done = None, None, False
                async for line in response.aiter_lines():
                    if not line.startswith("data: "):
                        continue
                    data = line.removeprefix("data: ")
                    if data == "[DONE]":
                        done = True
                        continue
                    event = json.loads(data)
                    if "error" in event:
                        error = event["error"]
                        continue
                    for choice in event.get("choices", []):
                        text.append(choice.get("delta", {}).get("content") or "")
                    conversation_id = event.get("conversation_id", conversation_id)
                if error is not None:
                    # In-band: the headers (200) were gone before the upstream failed.
                    outcome.status = int(error["code"])
                    outcome.media_type = MEDIA_TYPE
                    outcome.body = {"type": PROBLEM_BASE + error["type"], "in_band": True}
                elif not done or conversation_id is None:
                    outcome.error = f"stream ended without [DONE] or conversation: {text}"
                else:
                    outcome.body = {
                        "conversation_id": conversation_id,
                        "choices": [{"message": {"content": "".join(text)}}],
                    }
    except httpx.TimeoutException as exc:
        outcome.error = f"hung: {type(exc).__name__}"
    except httpx.TransportError as exc:
        outcome.error = f"transport: {type(exc).__name__}: {exc}"
    outcome.elapsed = time.monotonic() - started
    return outcome


async def mixed(client: httpx.AsyncClient, d: Deployment, n: int) -> Outcome:
    return await (chat_stream_once(client, d, n) if n % 2 else chat_once(client, d, n))


async def test_upstream_killed_then_hanging_during_chat(
    tmp_path: Path, upstream_process: UpstreamProcess
) -> None:
    up = upstream_process
    config = base_config(tmp_path / "var", "", up.base_url)
    config["storage"]["database_url"] = f"sqlite+aiosqlite:///{tmp_path / 'obsigen.db'}"
    config["inference"].update(timeout_s=TIMEOUT_S, max_retries=MAX_RETRIES)
    traffic = Traffic()

    def seen_since(t: float, status: int, count: int = 1) -> bool:
        return sum(o.status == status for o in traffic.outcomes if o.started >= t) >= count

    async with deployed(tmp_path, config) as d:
        # Down before the server ever listed the models: the first chat must still get a
        # clear 502 (the model list it needs cannot be fetched), not a 500.
        up.signal(signal.SIGKILL)
        async with httpx.AsyncClient(timeout=BOUND_S + 10) as client:
            first = await chat_once(client, d, -1)
        assert_clear_errors([first], {502: {"inference-failed"}}, bound_s=BOUND_S)
        up.start()

        lanes = asyncio.create_task(traffic.lanes(3, lambda c, n: mixed(c, d, n), timeout_s=30))
        try:
            start = time.monotonic()
            await until(lambda: seen_since(start, 200, 4), 30, "no answers before the fault")

            killed = time.monotonic()
            up.signal(signal.SIGKILL)
            await until(lambda: seen_since(killed, 502, 2), BOUND_S, "no 502 while it was gone")
            restarted = time.monotonic()
            await asyncio.to_thread(up.start)
            await until(lambda: seen_since(restarted, 200, 4), 30, "no answers after restart")

            frozen = time.monotonic()
            up.signal(signal.SIGSTOP)
            await until(lambda: seen_since(frozen, 504, 2), 2 * BOUND_S, "no 504 while it hung")
            thawed = time.monotonic()
            up.signal(signal.SIGCONT)
            await until(lambda: seen_since(thawed, 200, 4), 30, "no answers after the thaw")
        finally:
            up.signal(signal.SIGCONT)
            traffic.stop.set()
            await lanes
        d.server.assert_recovered_in_place()
        print(f"\ninference fault: {statuses(traffic.outcomes)}")
        print(f"inference fault: slowest {max(o.elapsed for o in traffic.outcomes):.1f} s")
        assert_clear_errors(traffic.outcomes, FAILED, bound_s=BOUND_S)
        assert any(o.status == 502 for o in traffic.between(killed, restarted))
        assert any(o.status == 504 for o in traffic.between(frozen, thawed))
        counts = await assert_chats_stored(d, traffic.outcomes)
        print(f"inference fault: {counts}")
        # The database was up all along: every failed turn's prompt is kept, marked failed.
        assert counts["failed_not_stored"] == 0, counts
        assert counts["failed_marked"] >= 5, counts
    d.server.audit_verify()
