"""OTLP logs over HTTP and gRPC to real receivers on loopback that decode the protobufs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.fakes.audit_receivers import (
    OtlpGrpcReceiver,
    OtlpHttpReceiver,
    OtlpLog,
    Receiver,
    audit_event,
    kill_sink_scenario,
    wait_until,
)

from obsigen import __version__
from obsigen.audit.events import AuditEvent
from obsigen.audit.recorder import AuditRecorder
from obsigen.audit.sink_factory import make_audit_sinks
from obsigen.audit.spool import SpooledSink
from obsigen.config import Settings

# Short exporter timeouts: a dead receiver fails an attempt fast and the spool retries.
TUNING = "timeout_s=1&backoff_s=0.05&max_backoff_s=0.3&close_timeout_s=2"


@pytest.fixture
def http_receiver() -> Iterator[OtlpHttpReceiver]:
    receiver = OtlpHttpReceiver()
    receiver.start()
    yield receiver
    receiver.stop()


@pytest.fixture
def grpc_receiver() -> Iterator[OtlpGrpcReceiver]:
    receiver = OtlpGrpcReceiver()
    receiver.start()
    yield receiver
    receiver.stop()


def http_uri(receiver: OtlpHttpReceiver, extra: str = "") -> str:
    return f"otlp+http://127.0.0.1:{receiver.port}/v1/logs?{TUNING}{extra}"


def grpc_uri(receiver: OtlpGrpcReceiver, extra: str = "") -> str:
    return f"otlp+grpc://127.0.0.1:{receiver.port}?{TUNING}{extra}"


def recorder_for(tmp_path: Path, uri: str) -> tuple[AuditRecorder, SpooledSink]:
    settings = Settings(
        paths={"data_dir": tmp_path / "data"},
        audit={"sinks": [uri]},
        residency={"region": "eea"},
    )
    sinks = make_audit_sinks(settings)
    sink = sinks[0]
    assert isinstance(sink, SpooledSink)
    return AuditRecorder(sinks), sink


def sample_events() -> list[AuditEvent]:
    return [
        audit_event(1),
        AuditEvent(
            type="auth.login",
            tenant_id="tenant-b",
            actor={"kind": "user", "id": "u2"},
            outcome="failure",
            data={"method": "password", "reason": "bad password"},
            source_address="192.0.2.7",
        ),
        AuditEvent(
            type="audit.verify",
            tenant_id="tenant-a",
            actor={"kind": "system", "id": "cli"},
            outcome="failure",
            data={"finding": "seq 6 modified"},
        ),
    ]


def check_logs(logs: list[OtlpLog], events: list[AuditEvent]) -> None:
    by_id = {log.attributes["obsigen.event_id"]: log for log in logs}
    severities = {"chat.prompt": 9, "auth.login": 13, "audit.verify": 21}  # INFO, WARN, FATAL
    for item in events:
        log = by_id[item.event_id]
        assert log.resource["service.name"] == "obsigen"
        assert log.resource["service.version"] == __version__
        assert log.resource["deployment.region"] == "eea"
        assert log.resource["host.name"]
        assert log.scope == "obsigen.audit"
        assert log.event == json.loads(json.dumps(item.to_json()))
        assert log.event_name == item.type
        assert log.severity_number == severities[item.type]
        assert log.severity_text == item.severity_name
        assert log.time_unix_nano == int(item.time.timestamp()) * 10**9 + (
            item.time.microsecond * 1000
        )
        assert log.attributes["obsigen.tenant_id"] == item.tenant_id
        assert log.attributes["obsigen.type"] == item.type
        assert log.attributes["obsigen.outcome"] == item.outcome
        assert log.attributes["obsigen.actor.id"] == item.actor["id"]
        assert log.attributes["ocsf.class_uid"] == item.to_json()["class_uid"]
    login = by_id[events[1].event_id]
    assert login.attributes["client.address"] == "192.0.2.7"


async def test_http_receiver_gets_log_records_with_resource_and_attributes(
    tmp_path: Path, http_receiver: OtlpHttpReceiver
) -> None:
    recorder, _ = recorder_for(tmp_path, http_uri(http_receiver))
    events = sample_events()
    for item in events:
        await recorder.record(item)
    assert await recorder.flush(10)
    await recorder.aclose()
    check_logs(http_receiver.logs, events)
    assert set(http_receiver.content_types) == {"application/x-protobuf"}


async def test_http_gzip_compression(tmp_path: Path, http_receiver: OtlpHttpReceiver) -> None:
    recorder, _ = recorder_for(tmp_path, http_uri(http_receiver, "&compression=gzip"))
    events = sample_events()
    for item in events:
        await recorder.record(item)
    assert await recorder.flush(10)
    await recorder.aclose()
    check_logs(http_receiver.logs, events)


async def test_grpc_receiver_gets_log_records_with_resource_and_attributes(
    tmp_path: Path, grpc_receiver: OtlpGrpcReceiver
) -> None:
    recorder, _ = recorder_for(tmp_path, grpc_uri(grpc_receiver))
    events = sample_events()
    for item in events:
        await recorder.record(item)
    assert await recorder.flush(10)
    await recorder.aclose()
    check_logs(grpc_receiver.logs, events)


async def run_kill_sink(tmp_path: Path, receiver: Receiver, uri: str, label: str) -> None:
    recorder, sink = recorder_for(tmp_path, uri)
    try:
        result = await kill_sink_scenario(recorder, sink, receiver)
    finally:
        await recorder.aclose()
        await asyncio.to_thread(receiver.stop)
    assert set(result.sent) <= result.received
    assert result.max_emit_down_s < 0.2, result.emit_latencies_down
    assert result.spooled_while_down > 0
    assert result.failed_attempts > 0
    print(
        f"{label} kill-sink: {len(result.sent)} events, max emit while down "
        f"{result.max_emit_down_s * 1000:.1f} ms, {result.spooled_while_down} spooled, "
        f"{result.failed_attempts} failed attempts, caught up {result.catch_up_s:.2f} s after "
        f"restart, {result.duplicates} duplicates"
    )


async def test_kill_sink_http_nothing_lost(tmp_path: Path) -> None:
    receiver = OtlpHttpReceiver()
    receiver.start()
    await run_kill_sink(tmp_path, receiver, http_uri(receiver, "&fsync=always"), "otlp/http")


async def test_kill_sink_grpc_nothing_lost(tmp_path: Path) -> None:
    receiver = OtlpGrpcReceiver()
    receiver.start()
    await run_kill_sink(tmp_path, receiver, grpc_uri(receiver, "&fsync=always"), "otlp/grpc")


async def test_a_new_process_delivers_what_the_last_one_spooled(tmp_path: Path) -> None:
    """Spooled by one sink instance while the collector was down, delivered by the next
    instance (as after a restart of Obsigen) without any new event."""
    receiver = OtlpHttpReceiver()
    recorder, sink = recorder_for(tmp_path, http_uri(receiver))
    sent = []
    for n in range(15):
        item = audit_event(n, phase="first-process")
        await recorder.record(item)
        sent.append(item.event_id)
    await recorder.aclose()
    assert sink.pending_events() == 15

    receiver.start()
    try:
        second, second_sink = recorder_for(tmp_path, http_uri(receiver))
        assert second_sink.directory == sink.directory
        second.start()
        assert await wait_until(lambda: set(sent) <= receiver.event_ids(), 15)
        await second.aclose()
    finally:
        receiver.stop()
    assert second_sink.pending_events() == 0
