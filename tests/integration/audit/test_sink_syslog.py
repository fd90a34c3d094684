"""Syslog over TLS (RFC 5424 messages, RFC 5425 framing) to a real TLS receiver on loopback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.fakes.audit_receivers import (
    Pki,
    SyslogTlsReceiver,
    audit_event,
    kill_sink_scenario,
    make_pki,
    wait_until,
)

from obsigen.audit.events import AuditEvent
from obsigen.audit.recorder import AuditRecorder
from obsigen.audit.sink_factory import make_audit_sinks
from obsigen.audit.spool import SpooledSink
from obsigen.config import Settings

TUNING = "timeout_s=2&backoff_s=0.05&max_backoff_s=0.3&close_timeout_s=2"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("syslog-pki"))


@pytest.fixture
def mtls_receiver(pki: Pki) -> Iterator[SyslogTlsReceiver]:
    receiver = SyslogTlsReceiver(pki, require_client_cert=True)
    receiver.start()
    yield receiver
    receiver.stop()


def recorder_for(tmp_path: Path, uri: str) -> tuple[AuditRecorder, SpooledSink]:
    settings = Settings(paths={"data_dir": tmp_path / "data"}, audit={"sinks": [uri]})
    sinks = make_audit_sinks(settings)
    sink = sinks[0]
    assert isinstance(sink, SpooledSink)
    return AuditRecorder(sinks), sink


def uri(receiver: SyslogTlsReceiver, pki: Pki, *, ca: Path | None = None, extra: str = "") -> str:
    return (
        f"syslog+tls://127.0.0.1:{receiver.port}?ca={ca or pki.ca}"
        f"&cert={pki.client_cert}&key={pki.client_key}&{TUNING}{extra}"
    )


async def test_events_arrive_as_rfc5424_messages_over_mutual_tls(
    tmp_path: Path, pki: Pki, mtls_receiver: SyslogTlsReceiver
) -> None:
    recorder, _ = recorder_for(tmp_path, uri(mtls_receiver, pki))
    events = [
        audit_event(1),
        AuditEvent(
            type="auth.login",
            tenant_id="tenant-b",
            actor={"kind": "user", "id": "u2"},
            outcome="failure",
            # Characters RFC 5424 escapes in SD-PARAM values, and text that spans lines.
            interaction_id='a"b]c\\d',
            data={"reason": "bad password\nsecond line", "name": "Zoë ✓"},
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
    for item in events:
        await recorder.record(item)
    assert await recorder.flush(10)
    await recorder.aclose()

    assert mtls_receiver.errors == []
    assert mtls_receiver.client_subjects, "the client certificate was presented"
    by_id = {m.msg["event_id"]: m for m in mtls_receiver.messages}
    expected_severity = {"chat.prompt": 6, "auth.login": 4, "audit.verify": 2}
    for item in events:
        message = by_id[item.event_id]
        assert message.msg == json.loads(json.dumps(item.to_json()))
        assert message.facility == 13  # log audit
        assert message.severity == expected_severity[item.type]
        assert message.app_name == "obsigen"
        assert message.msgid == item.type
        assert message.procid.isdigit()
        when = datetime.fromisoformat(message.timestamp.replace("Z", "+00:00"))
        assert when == item.time.astimezone(UTC)
        sd = message.structured_data["obsigen@32473"]
        assert sd["event_id"] == item.event_id
        assert sd["tenant_id"] == item.tenant_id
        assert sd["outcome"] == item.outcome
        assert sd["type"] == item.type
        assert message.structured_data["origin"]["software"] == "obsigen"
    assert by_id[events[1].event_id].structured_data["obsigen@32473"]["interaction_id"] == (
        'a"b]c\\d'
    )


async def test_an_unverifiable_server_gets_nothing(
    tmp_path: Path, pki: Pki, mtls_receiver: SyslogTlsReceiver
) -> None:
    recorder, sink = recorder_for(tmp_path, uri(mtls_receiver, pki, ca=pki.other_ca))
    await recorder.record(audit_event(1))
    assert await wait_until(lambda: sink.status().consecutive_failures > 0, 10)
    assert "CERTIFICATE_VERIFY_FAILED" in sink.status().last_error
    await recorder.aclose()
    assert mtls_receiver.messages == []
    assert sink.pending_events() == 1  # kept for when the configuration is fixed


async def test_a_server_that_wants_a_client_certificate_refuses_none(
    tmp_path: Path, pki: Pki, mtls_receiver: SyslogTlsReceiver
) -> None:
    plain = f"syslog+tls://127.0.0.1:{mtls_receiver.port}?ca={pki.ca}&{TUNING}"
    recorder, sink = recorder_for(tmp_path, plain)
    await recorder.record(audit_event(1))
    assert await wait_until(lambda: sink.status().consecutive_failures > 0, 10)
    await recorder.aclose()
    assert mtls_receiver.messages == []
    assert sink.pending_events() == 1


async def test_kill_sink_nothing_lost(tmp_path: Path, pki: Pki) -> None:
    """The syslog receiver dies during traffic and comes back on the same port: every event
    arrives, the emits while it was gone stayed fast, the events waited on disk."""
    receiver = SyslogTlsReceiver(pki, require_client_cert=True)
    receiver.start()
    recorder, sink = recorder_for(tmp_path, uri(receiver, pki, extra="&fsync=always"))
    try:
        result = await kill_sink_scenario(recorder, sink, receiver)
    finally:
        await recorder.aclose()
        await asyncio.to_thread(receiver.stop)
    assert set(result.sent) <= result.received
    assert result.max_emit_down_s < 0.2, result.emit_latencies_down
    assert result.spooled_while_down > 0
    assert result.failed_attempts > 0
    assert receiver.errors == []
    print(
        f"syslog kill-sink: {len(result.sent)} events, max emit while down "
        f"{result.max_emit_down_s * 1000:.1f} ms, {result.spooled_while_down} spooled, "
        f"{result.failed_attempts} failed attempts, caught up {result.catch_up_s:.2f} s after "
        f"restart, {result.duplicates} duplicates"
    )
