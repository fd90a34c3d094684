"""The metrics' seams count what they should, and every label value comes from a closed set.

The registry is the process's own (other tests count into it too): counts are compared as
differences.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from tests.fakes.openai_upstream import FakeUpstream
from tests.fakes.sandbox import FakeBackend

from obsigen.assistant.hooks import GuardResult
from obsigen.audit.events import AuditEvent
from obsigen.audit.file_sink import FileAuditSink
from obsigen.audit.recorder import AuditRecorder
from obsigen.audit.spool import SpooledSink, SpoolPolicy
from obsigen.authz.principal import Principal
from obsigen.config import RateLimitSettings
from obsigen.inference.errors import InferenceTimeout
from obsigen.inference.interfaces import ChatMessage, CompletionRequest
from obsigen.inference.metered import MeteredProvider, metered
from obsigen.inference.openai_http import OpenAIHTTPProvider
from obsigen.metrics import (
    counts_verdicts,
    inference_error_label,
    method_label,
    rate_limit_scope,
    source_kind,
    status_class,
)
from obsigen.ratelimit.middleware import build_rate_limits
from obsigen.sandbox.interfaces import Limits, RunRequest, SandboxBusy
from obsigen.sandbox.pool import SandboxPool


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def event(tenant_id: str = "t-metrics") -> AuditEvent:
    return AuditEvent(
        type="chat.prompt",
        tenant_id=tenant_id,
        actor={"kind": "user", "id": "u1"},
        outcome="success",
        interaction_id="i1",
        data={},
    )


# --- closed label sets -----------------------------------------------------------------------


def test_client_controlled_values_are_clamped() -> None:
    assert method_label("GET") == "GET"
    assert method_label("PROPFIND") == "other"
    assert method_label("get") == "other"
    assert [status_class(s) for s in (101, 200, 302, 404, 503)] == [
        "1xx",
        "2xx",
        "3xx",
        "4xx",
        "5xx",
    ]
    assert status_class(0) == "none"
    assert source_kind("user") == "user"
    assert source_kind("tool:run_python") == "tool"
    assert source_kind("retrieval") == "retrieval"
    assert source_kind("file:payroll-2026.xlsx") == "other"
    assert inference_error_label(InferenceTimeout("slow")) == "timeout"
    assert inference_error_label(ValueError("x")) == "other"


def test_rate_limit_scopes_from_the_limiters_own_keys() -> None:
    limits = build_rate_limits(RateLimitSettings(), None)
    tenant_id, user_id = uuid.uuid4().hex, uuid.uuid4().hex
    principal = Principal(tenant_id=tenant_id, kind="user", id=user_id, roles=frozenset())
    keys = [limit.key for limit in limits.limits_for("GET", "/v1/models", principal, None)]
    assert [rate_limit_scope(key) for key in keys] == ["tenant", "principal", "endpoint"]
    # The keys hold the ids; the scope never does.
    assert all(tenant_id in key for key in keys)
    (anonymous,) = limits.limits_for("POST", "/auth/login", None, "198.51.100.7")
    assert rate_limit_scope(anonymous.key) == "address"
    assert rate_limit_scope("something-else") == "other"


# --- seams -------------------------------------------------------------------------------------


async def test_audit_emits_and_failures_are_counted_per_sink(tmp_path: Path) -> None:
    good = FileAuditSink(tmp_path / "good")
    broken = FileAuditSink(tmp_path / "broken")
    # Its directory replaced by a file: every write fails (even as root).
    shutil.rmtree(tmp_path / "broken")
    (tmp_path / "broken").write_text("not a directory")
    broken.name = "file-broken"
    before = (
        sample("obsigen_audit_emits_total", sink="file"),
        sample("obsigen_audit_emit_failures_total", sink="file-broken"),
        sample("obsigen_audit_emits_total", sink="file-broken"),
    )

    await AuditRecorder([good]).record(event())
    with pytest.raises(OSError):
        await AuditRecorder([good, broken]).record(event())

    assert sample("obsigen_audit_emits_total", sink="file") - before[0] == 2
    assert sample("obsigen_audit_emit_failures_total", sink="file-broken") - before[1] == 1
    assert sample("obsigen_audit_emits_total", sink="file-broken") - before[2] == 0


class DownSender:
    target = "fake://down"

    async def send(self, records: Sequence[Mapping[str, Any]]) -> None:
        raise ConnectionRefusedError("receiver down")

    async def aclose(self) -> None:
        return None


async def test_spool_depth_is_read_from_the_sinks_at_scrape_time(tmp_path: Path) -> None:
    name = f"siem-{uuid.uuid4().hex[:8]}"
    policy = SpoolPolicy(fsync="never", initial_backoff_s=0.02, max_backoff_s=0.08, poll_s=0.05,
                         close_timeout_s=0.2)  # fmt: skip
    sink = SpooledSink(name, tmp_path / "spool", DownSender(), policy)
    recorder = AuditRecorder([sink])
    try:
        assert sample("obsigen_audit_spool_bytes", sink=name) == 0
        for _ in range(3):
            await recorder.record(event())
        async with asyncio.timeout(10):
            while sink.status().failed_attempts == 0:  # noqa: ASYNC110 - no event to wait on
                await asyncio.sleep(0.01)
        assert sample("obsigen_audit_spool_bytes", sink=name) == sink.status().spooled_bytes > 0
        assert sample("obsigen_audit_spool_max_bytes", sink=name) == policy.max_bytes
        assert sample("obsigen_audit_delivery_failures_total", sink=name) >= 1
        assert sample("obsigen_audit_delivered_events_total", sink=name) == 0
        assert sample("obsigen_audit_emits_total", sink=name) == 3
    finally:
        await recorder.aclose()


class Guard:
    def __init__(self, result: GuardResult) -> None:
        self.result = result

    @counts_verdicts
    async def check(self, text: str, *, source: str, tenant_id: str | None = None) -> GuardResult:
        return self.result


async def test_safeguard_verdicts_are_counted_by_verdict_and_source_kind() -> None:
    def now() -> tuple[float, ...]:
        return (
            sample("obsigen_safeguard_verdicts_total", verdict="block", source="tool"),
            sample("obsigen_safeguard_verdicts_total", verdict="flagged", source="user"),
            sample("obsigen_safeguard_verdicts_total", verdict="allow", source="other"),
        )

    before = now()
    await Guard(GuardResult("block", 0.99, ("injection",))).check("x", source="tool:search_files")
    await Guard(GuardResult("allow", 0.95, ("unsafe",))).check("x", source="user", tenant_id="t")
    await Guard(GuardResult("allow")).check("x", source="file:secret-plan.pdf")
    assert [a - b for a, b in zip(now(), before, strict=True)] == [1, 1, 1]


async def test_sandbox_runs_are_counted_by_backend_and_outcome() -> None:
    runner = SandboxPool(FakeBackend(run_delay_s=0.2), Limits(wall_time_s=4), size=0,
                         concurrency=1, queue_timeout_s=0.05)  # fmt: skip
    ok, busy = (
        sample("obsigen_sandbox_runs_total", backend="bwrap", outcome="ok"),
        sample("obsigen_sandbox_runs_total", backend="bwrap", outcome="busy"),
    )
    try:
        first = asyncio.ensure_future(runner.run(RunRequest("print(1)")))
        await asyncio.sleep(0.05)
        with pytest.raises(SandboxBusy):
            await runner.run(RunRequest("print(2)"))
        assert (await first).exit_code == 0
    finally:
        await runner.aclose()
    assert sample("obsigen_sandbox_runs_total", backend="bwrap", outcome="ok") - ok == 1
    assert sample("obsigen_sandbox_runs_total", backend="bwrap", outcome="busy") - busy == 1


async def test_model_calls_are_timed_and_failures_counted(
    upstream_server: tuple[FakeUpstream, str], upstream: FakeUpstream
) -> None:
    request = CompletionRequest(model="fake-model", messages=(ChatMessage("user", "hi"),))
    provider = metered(OpenAIHTTPProvider(base_url=upstream_server[1], region="de"))
    assert isinstance(provider, MeteredProvider)
    assert metered(provider) is provider
    assert (provider.name, provider.region) == ("openai", "de")
    streamed = sample("obsigen_inference_call_duration_seconds_count", provider="openai",
                      call="stream")  # fmt: skip
    completed = sample("obsigen_inference_call_duration_seconds_count", provider="openai",
                       call="complete")  # fmt: skip
    try:
        chunks = [chunk async for chunk in provider.stream(request)]
        assert chunks
        assert (await provider.complete(request)).content == upstream.answer
    finally:
        await provider.aclose()
    assert sample("obsigen_inference_call_duration_seconds_count", provider="openai",
                  call="stream") - streamed == 1  # fmt: skip
    assert sample("obsigen_inference_call_duration_seconds_count", provider="openai",
                  call="complete") - completed == 1  # fmt: skip

    # Nothing listens on port 9 of loopback: the connection is refused.
    down = metered(OpenAIHTTPProvider(base_url="http://127.0.0.1:9", region="de", max_retries=0))
    failed = sample("obsigen_inference_errors_total", provider="openai", error="unavailable")
    try:
        with pytest.raises(Exception, match=r"(?i)reach|connect|unavailable"):
            await down.complete(request)
    finally:
        await down.aclose()
    assert sample("obsigen_inference_errors_total", provider="openai", error="unavailable") == (
        failed + 1
    )
