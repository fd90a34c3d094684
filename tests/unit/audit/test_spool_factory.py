"""``[audit] sinks`` URIs: each remote sink behind its own spool; nonsense refused at start."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from tests.fakes.audit_receivers import Pki, make_pki

from obsigen.audit.db_store import DatabaseAuditSink
from obsigen.audit.file_sink import FileAuditSink
from obsigen.audit.interfaces import AuditSink
from obsigen.audit.otlp_sink import OtlpLogSender
from obsigen.audit.recorder import AuditRecorder
from obsigen.audit.s3_sink import S3Sender
from obsigen.audit.sink_factory import AuditSinkConfigError, make_audit_sinks
from obsigen.audit.spool import SpooledSink
from obsigen.audit.syslog_sink import SyslogTlsSender
from obsigen.config import Settings


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def settings(tmp_path: Path, *sinks: str) -> Settings:
    return Settings(
        paths={"data_dir": tmp_path / "data"},
        audit={"sinks": list(sinks)},
        residency={"region": "eea"},
    )


def build(tmp_path: Path, *sinks: str) -> list[AuditSink]:
    return make_audit_sinks(settings(tmp_path, *sinks))


async def test_every_form_builds_its_sink_behind_a_spool(tmp_path: Path, pki: Pki) -> None:
    sinks = build(
        tmp_path,
        "database",
        "file",
        f"syslog+tls://127.0.0.1:6514?ca={pki.ca}&cert={pki.client_cert}&key={pki.client_key}",
        "otlp+http://127.0.0.1:4318/v1/logs",
        "otlp+grpc://127.0.0.1:4317",
        "s3://audit-copies?region=eu-central-1&endpoint_url=http://127.0.0.1:9000"
        "&prefix=obsigen&object_lock_days=30&object_lock_mode=compliance",
    )
    try:
        assert isinstance(sinks[0], DatabaseAuditSink)
        assert isinstance(sinks[1], FileAuditSink)
        spooled = sinks[2:]
        assert all(isinstance(sink, SpooledSink) for sink in spooled)
        names = [sink.name for sink in spooled]
        assert names == [
            "syslog-127.0.0.1-6514",
            "otlp-http-127.0.0.1-4318",
            "otlp-grpc-127.0.0.1-4317",
            "s3-audit-copies-obsigen",
        ]
        senders = [sink.sender for sink in spooled if isinstance(sink, SpooledSink)]
        assert isinstance(senders[0], SyslogTlsSender)
        assert isinstance(senders[1], OtlpLogSender)
        assert isinstance(senders[2], OtlpLogSender)
        assert isinstance(senders[3], S3Sender)
        assert senders[0].target == "syslog+tls://127.0.0.1:6514"
        assert senders[1].target == "otlp+http://127.0.0.1:4318/v1/logs"
        assert senders[2].target == "otlp+grpc://127.0.0.1:4317"
        assert senders[3].target == "s3://audit-copies/obsigen/"
        for sink in spooled:
            assert isinstance(sink, SpooledSink)
            assert sink.directory == tmp_path / "data" / "audit-spool" / sink.name
            assert sink.directory.is_dir()
        resource = senders[1].resource.attributes  # type: ignore[attr-defined]
        assert resource["service.name"] == "obsigen"
        assert resource["deployment.region"] == "eea"
    finally:
        await AuditRecorder(sinks).aclose()


async def test_spool_parameters_tune_the_spool(tmp_path: Path) -> None:
    sinks = build(
        tmp_path,
        "otlp+http://127.0.0.1:4318?name=siem&spool_max_mb=2&fsync=interval&batch=50"
        "&timeout_s=2&backoff_s=0.1&max_backoff_s=5&close_timeout_s=1&emit_timeout_s=0.5",
    )
    try:
        sink = sinks[0]
        assert isinstance(sink, SpooledSink)
        assert sink.name == "siem"
        policy = sink.policy
        assert policy.max_bytes == 2 * 2**20
        assert policy.fsync == "interval"
        assert policy.batch_events == 50
        assert policy.initial_backoff_s == 0.1
        assert policy.max_backoff_s == 5
        assert policy.close_timeout_s == 1
        assert policy.emit_timeout_s == 0.5
        assert policy.attempt_timeout_s == 3 * 2 + 5
        assert sink.sender.target == "otlp+http://127.0.0.1:4318/v1/logs"
    finally:
        await AuditRecorder(sinks).aclose()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("kafka://broker:9092", "not supported; use one of"),
        ("syslog://127.0.0.1:514", "not supported; use one of"),
        ("syslog+udp://127.0.0.1:514", "not supported; use one of"),
        ("https://collector:4318", "not supported; use one of"),
        ("databse", "not supported; use one of"),
        ("otlp+http://127.0.0.1", "names no port"),
        ("otlp+http://:4318/v1/logs", "names no host"),
        ("otlp+grpc://127.0.0.1:4317/v1/logs", "has no path"),
        ("otlp+http://127.0.0.1:4318?compresion=gzip", "unknown parameter(s) compresion"),
        ("otlp+http://127.0.0.1:4318?compression=brotli", "compression must be"),
        ("otlp+http://127.0.0.1:4318?ca=/etc/ca.pem", "not found"),
        ("s3://?region=eu-central-1", "names no bucket"),
        ("s3://b?regoin=eu-central-1", "unknown parameter(s) regoin"),
        ("s3://b?object_lock_days=-3", "at least 0"),
        ("s3://b?object_lock_days=30&object_lock_mode=forever", "GOVERNANCE or COMPLIANCE"),
        ("s3://b?access_key_id=env:KEY", "go together"),
        ("s3://b?fsync=sometimes", "fsync must be"),
        ("s3://b?spool_max_mb=0", "greater than 0"),
        ("s3://b?batch=many", "whole number"),
        ("s3://b?region=a&region=b", "given twice"),
        ("syslog+tls://127.0.0.1:6514?facility=99", "facility must be"),
        ("syslog+tls://127.0.0.1:6514?ca=/nonexistent/ca.pem", "not found"),
        ("syslog+tls://127.0.0.1:99999", "port is not valid"),
    ],
)
def test_nonsense_is_refused_at_start_with_a_clear_message(
    tmp_path: Path, spec: str, message: str
) -> None:
    with pytest.raises(AuditSinkConfigError, match="audit sink") as raised:
        build(tmp_path, spec)
    assert message in str(raised.value)


@pytest.mark.parametrize(
    "spec",
    [
        "otlp+http://admin:hunter2@127.0.0.1:4318/v1/logs",
        "s3://b?access_key_id=AKIAhunter2&secret_access_key=hunter2",
        "otlp+http://127.0.0.1:4318?headers=authorization%3Dhunter2",
    ],
)
def test_credentials_only_by_reference_and_never_echoed(tmp_path: Path, spec: str) -> None:
    with pytest.raises(AuditSinkConfigError) as raised:
        build(tmp_path, spec)
    assert "hunter2" not in str(raised.value)
    assert "credentials" in str(raised.value) or "reference" in str(raised.value)


def test_syslog_key_password_must_be_a_reference(tmp_path: Path, pki: Pki) -> None:
    spec = (
        f"syslog+tls://127.0.0.1:6514?ca={pki.ca}&cert={pki.client_cert}"
        f"&key={pki.client_key}&key_password=hunter2"
    )
    with pytest.raises(AuditSinkConfigError, match="must be a reference") as raised:
        build(tmp_path, spec)
    assert "hunter2" not in str(raised.value)


def test_syslog_cert_without_key_is_refused(tmp_path: Path, pki: Pki) -> None:
    with pytest.raises(AuditSinkConfigError, match="cert and key go together"):
        build(tmp_path, f"syslog+tls://127.0.0.1:6514?ca={pki.ca}&cert={pki.client_cert}")


def test_tls_files_without_tls_are_refused(tmp_path: Path, pki: Pki) -> None:
    with pytest.raises(AuditSinkConfigError, match="need TLS"):
        build(tmp_path, f"otlp+grpc://127.0.0.1:4317?ca={pki.ca}")


def test_two_sinks_cannot_share_a_spool(tmp_path: Path) -> None:
    with pytest.raises(AuditSinkConfigError, match=r"already spools in audit-spool/s3-b"):
        build(tmp_path, "s3://b?region=eu-central-1", "s3://b?region=eu-west-1")


async def test_a_spool_left_by_a_removed_sink_is_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    orphan = tmp_path / "data" / "audit-spool" / "syslog-old-6514"
    orphan.mkdir(parents=True)
    (orphan / "0001-1-aa.seg").write_text('{"event_id":"x"}\n')
    with caplog.at_level(logging.WARNING, logger="obsigen.audit.sinks"):
        sinks = build(tmp_path, "file")
    await AuditRecorder(sinks).aclose()
    assert any("syslog-old-6514" in r.getMessage() for r in caplog.records)
    assert any("no longer configured" in r.getMessage() for r in caplog.records)
