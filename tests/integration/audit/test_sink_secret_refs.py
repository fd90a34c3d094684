"""Audit sink credentials take every reference kind the rest of the config takes (env:, file:,
awssm:), never a value; an awssm: reference is read from moto's Secrets Manager on loopback
and what it holds is what the SIEM receives."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from tests.conftest import require_service
from tests.fakes.audit_receivers import audit_event
from tests.fakes.key_services import KMS_REGION, MotoServer, moto_available, moto_server

from obsigen.audit.recorder import AuditRecorder
from obsigen.audit.sink_factory import AuditSinkConfigError, make_audit_sinks
from obsigen.config import Settings
from obsigen.secrets.aws import clear_cache

TUNING = "timeout_s=2&backoff_s=0.05&max_backoff_s=0.3&close_timeout_s=2"


class HeaderRecordingCollector:
    """An OTLP/HTTP endpoint that keeps the Authorization header of every export."""

    def __init__(self) -> None:
        self.authorizations: list[str] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                collector.authorizations.append(self.headers.get("Authorization", ""))
                reply = logs_service_pb2.ExportLogsServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> HeaderRecordingCollector:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    require_service("moto_server (moto[server] and boto3)", moto_available())
    with moto_server() as server:
        yield server


def _settings(tmp_path: Path, spec: str) -> Settings:
    return Settings(paths={"data_dir": tmp_path / "data"}, audit={"sinks": [spec]})


async def test_otlp_headers_from_aws_secrets_manager_reach_the_collector(
    tmp_path: Path, moto: MotoServer
) -> None:
    import boto3

    token = secrets.token_urlsafe(24)
    name = f"obsigen/otlp-{secrets.token_hex(4)}"
    boto3.client(
        "secretsmanager", region_name=KMS_REGION, endpoint_url=moto.endpoint_url
    ).create_secret(Name=name, SecretString=f'{{"headers": "authorization=Bearer {token}"}}')
    ref = f"awssm:{name}#headers?region={KMS_REGION}&endpoint_url={moto.endpoint_url}&ttl=0"
    clear_cache()
    with HeaderRecordingCollector() as collector:
        # The reference carries its own ?, & and #: percent-encoded inside the sink URI.
        spec = (
            f"otlp+http://127.0.0.1:{collector.port}/v1/logs?{TUNING}&headers={quote(ref, safe='')}"
        )
        recorder = AuditRecorder(make_audit_sinks(_settings(tmp_path, spec)))
        await recorder.record(audit_event(1))
        assert await recorder.flush(10)
        await recorder.aclose()
    assert collector.authorizations
    assert set(collector.authorizations) == {f"Bearer {token}"}


def _spec(parameter: str, value: str) -> str:
    # Each parameter on a sink that takes it; the S3 keys go in pairs.
    encoded = quote(value, safe="")
    if parameter == "headers":
        return f"otlp+http://127.0.0.1:4318/v1/logs?headers={encoded}"
    return (
        f"s3://audit-copies?region=eu-central-1&access_key_id={encoded}&secret_access_key={encoded}"
    )


REFERENCES = [
    "env:SIEM_CREDENTIAL",
    "file:/run/secrets/siem",
    "awssm:obsigen/siem#token?region=eu-central-1",
    "awssm:arn:aws:secretsmanager:eu-central-1:123456789012:secret:siem",
]


@pytest.mark.parametrize("ref", REFERENCES)
def test_every_reference_kind_is_accepted_for_s3_keys(tmp_path: Path, ref: str) -> None:
    # Built, not resolved: the S3 sender reads its keys when it first connects.
    assert len(make_audit_sinks(_settings(tmp_path, _spec("s3", ref)))) == 1


def test_otlp_headers_resolve_from_env_and_owner_only_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # OTLP headers are resolved when the exporter is made, at start-up.
    monkeypatch.setenv("SIEM_HEADERS", "authorization=Bearer " + secrets.token_hex(8))
    secret_file = tmp_path / "siem-headers"
    secret_file.write_text("authorization=Bearer " + secrets.token_hex(8))
    secret_file.chmod(0o600)
    for ref in ("env:SIEM_HEADERS", f"file:{secret_file}"):
        assert len(make_audit_sinks(_settings(tmp_path, _spec("headers", ref)))) == 1
    secret_file.chmod(0o644)
    with pytest.raises(AuditSinkConfigError, match="chmod 600"):
        make_audit_sinks(_settings(tmp_path, _spec("headers", f"file:{secret_file}")))


@pytest.mark.parametrize("parameter", ["headers", "s3"])
def test_a_value_is_refused_without_being_echoed(tmp_path: Path, parameter: str) -> None:
    value = "authorization=Bearer " + secrets.token_hex(8)
    with pytest.raises(AuditSinkConfigError, match="must be a reference") as raised:
        make_audit_sinks(_settings(tmp_path, _spec(parameter, value)))
    assert value not in str(raised.value)
    assert value.split()[-1] not in str(raised.value)


def test_vault_is_refused_as_unsupported_in_this_build(tmp_path: Path) -> None:
    with pytest.raises(AuditSinkConfigError, match="not supported in this build"):
        make_audit_sinks(_settings(tmp_path, _spec("headers", "vault:secret/data/siem#token")))
