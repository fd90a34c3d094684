"""Audit events as OpenTelemetry log records, exported over OTLP/HTTP or OTLP/gRPC.

The records come from an SDK ``LoggerProvider`` whose resource names the service
(``service.name`` = obsigen, ``service.version``, ``deployment.region`` = the residency
region, ``host.name``). Each event becomes one record: timestamp = the event's time,
severity from the event's, ``event_name`` = the event type, the fields a collector filters on
as attributes (``obsigen.event_id``, ``obsigen.tenant_id``, ...), and the body = the event as
JSON, exactly as the other sinks write it.

No ``BatchLogRecordProcessor``: it drops a batch its exporter failed to send. The provider's
only processor hands the records back to us, and we call the exporter's ``export()`` on a
thread of our own, so each batch's result is known and a failed one stays in the spool.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol

from opentelemetry._logs import SeverityNumber
from opentelemetry.context import Context
from opentelemetry.sdk._logs import (
    LoggerProvider,
    LogRecordProcessor,
    ReadableLogRecord,
    ReadWriteLogRecord,
)
from opentelemetry.sdk._logs.export import LogRecordExportResult
from opentelemetry.sdk.resources import Resource

from obsigen import __version__
from obsigen.audit.spool import DeliveryError, run_blocking
from obsigen.secretref import resolve_secret

Protocol_ = Literal["http", "grpc"]

SEVERITY_NUMBERS: dict[str, SeverityNumber] = {
    "informational": SeverityNumber.INFO,
    "low": SeverityNumber.INFO2,
    "medium": SeverityNumber.WARN,
    "high": SeverityNumber.ERROR,
    "critical": SeverityNumber.FATAL,
}
SCOPE = "obsigen.audit"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class OtlpConfig:
    protocol: Protocol_
    # HTTP: the full URL of the logs endpoint (…/v1/logs); gRPC: host:port.
    endpoint: str
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    # A secret reference whose value is "name=value,name2=value2" (OTEL_EXPORTER_OTLP_HEADERS
    # syntax), e.g. an API key header for a hosted collector.
    headers: str = ""
    timeout_s: float = 10.0
    compression: Literal["none", "gzip"] = "none"
    resource_attributes: Mapping[str, str] = field(default_factory=dict)

    @property
    def target(self) -> str:
        if self.protocol == "http":
            return f"otlp+{self.endpoint}"
        return f"otlp+grpc{'s' if self.tls else ''}://{self.endpoint}"


def resource_attributes(region: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    attributes = {
        "service.name": "obsigen",
        "service.version": __version__,
        "host.name": socket.gethostname(),
    }
    if region:
        attributes["deployment.region"] = region
    attributes.update(extra or {})
    return attributes


def _parse_headers(ref: str) -> dict[str, str]:
    if not ref:
        return {}
    headers: dict[str, str] = {}
    for item in resolve_secret(ref).split(","):
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            # The value is a secret: name only the reference.
            raise ValueError(f"OTLP headers from {ref} must look like name=value,name2=value2")
        headers[name.strip().lower()] = value.strip()
    return headers


class LogRecordExporterLike(Protocol):
    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult: ...

    def shutdown(self) -> None: ...


def make_exporter(config: OtlpConfig) -> LogRecordExporterLike:
    headers = _parse_headers(config.headers)
    for label, path in (
        ("ca", config.ca_file),
        ("cert", config.cert_file),
        ("key", config.key_file),
    ):
        if path is not None and not path.is_file():
            raise ValueError(f"audit sink {config.target}: {label} file {path} not found")
    if (config.cert_file is None) != (config.key_file is None):
        raise ValueError(f"audit sink {config.target}: cert and key go together")
    if config.protocol == "http":
        return _http_exporter(config, headers)
    return _grpc_exporter(config, headers)


def _http_exporter(config: OtlpConfig, headers: dict[str, str]) -> LogRecordExporterLike:
    import requests
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

    session = requests.Session()
    # Audit data goes where the configuration says, not through a proxy from the environment.
    session.trust_env = False
    return OTLPLogExporter(
        endpoint=config.endpoint,
        certificate_file=str(config.ca_file) if config.ca_file else None,
        client_certificate_file=str(config.cert_file) if config.cert_file else None,
        client_key_file=str(config.key_file) if config.key_file else None,
        headers=headers,
        timeout=config.timeout_s,
        compression=Compression.Gzip if config.compression == "gzip" else Compression.NoCompression,
        session=session,
    )


def _grpc_exporter(config: OtlpConfig, headers: dict[str, str]) -> LogRecordExporterLike:
    import grpc  # type: ignore[import-untyped]
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter

    credentials = None
    if config.tls:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=config.ca_file.read_bytes() if config.ca_file else None,
            private_key=config.key_file.read_bytes() if config.key_file else None,
            certificate_chain=config.cert_file.read_bytes() if config.cert_file else None,
        )
    return OTLPLogExporter(
        endpoint=config.endpoint,
        insecure=not config.tls,
        credentials=credentials,
        headers=headers or None,
        timeout=config.timeout_s,
        compression=grpc.Compression.Gzip if config.compression == "gzip" else None,
    )


class _Collect(LogRecordProcessor):
    """The provider's only processor: keeps what the logger emitted for us to export."""

    def __init__(self) -> None:
        self._local = threading.local()

    def begin(self) -> None:
        self._local.records = []

    def take(self) -> list[ReadWriteLogRecord]:
        records: list[ReadWriteLogRecord] = self._local.records
        self._local.records = []
        return records

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        self._local.records.append(log_record)

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _nanos(value: object) -> int | None:
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    # Integer arithmetic: a float timestamp is off by a microsecond now and then.
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1000


def log_attributes(record: Mapping[str, Any]) -> dict[str, str | int]:
    """The fields a collector routes and filters on; everything else is in the body."""
    attributes: dict[str, str | int] = {}
    for key in ("event_id", "tenant_id", "type", "outcome", "severity", "interaction_id"):
        value = record.get(key)
        if value:
            attributes[f"obsigen.{key}"] = str(value)
    for key in ("class_uid", "category_uid", "severity_id"):
        value = record.get(key)
        if isinstance(value, int):
            attributes[f"ocsf.{key}"] = value
    actor = record.get("actor")
    if isinstance(actor, Mapping):
        for key in ("kind", "id"):
            if actor.get(key):
                attributes[f"obsigen.actor.{key}"] = str(actor[key])
    source = record.get("src_endpoint")
    if isinstance(source, Mapping) and source.get("ip"):
        attributes["client.address"] = str(source["ip"])
    return attributes


class OtlpLogSender:
    def __init__(self, config: OtlpConfig, exporter: LogRecordExporterLike | None = None) -> None:
        self._config = config
        self._exporter = exporter or make_exporter(config)
        self._collect = _Collect()
        self._resource = Resource.create(dict(config.resource_attributes))
        self._provider = LoggerProvider(resource=self._resource, shutdown_on_exit=False)
        self._provider.add_log_record_processor(self._collect)
        self._logger = self._provider.get_logger(SCOPE, __version__)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="audit-otlp")
        self._closed = False

    @property
    def target(self) -> str:
        return self._config.target

    @property
    def resource(self) -> Resource:
        return self._resource

    def records(self, events: Sequence[Mapping[str, Any]]) -> list[ReadableLogRecord]:
        self._collect.begin()
        for event in events:
            severity = str(event.get("severity", ""))
            self._logger.emit(
                timestamp=_nanos(event.get("time")),
                context=Context(),
                severity_number=SEVERITY_NUMBERS.get(severity, SeverityNumber.INFO),
                severity_text=severity or None,
                body=json.dumps(event, separators=(",", ":")),
                attributes=log_attributes(event),
                event_name=str(event.get("type", "")) or None,
            )
        return [
            ReadableLogRecord(
                log_record=record.log_record,
                resource=record.resource or self._resource,
                instrumentation_scope=record.instrumentation_scope,
                limits=record.limits,
            )
            for record in self._collect.take()
        ]

    async def send(self, records: Sequence[Mapping[str, Any]]) -> None:
        await run_blocking(self._executor, self._export, records)

    def _export(self, events: Sequence[Mapping[str, Any]]) -> None:
        batch = self.records(events)
        result = self._exporter.export(batch)
        if result is not LogRecordExportResult.SUCCESS:
            # The exporter logged the cause (status code, gRPC error) itself.
            raise DeliveryError(f"OTLP export of {len(batch)} records to {self.target} failed")

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        # shutdown() also cuts short an export that is waiting to retry.
        self._exporter.shutdown()
        self._executor.shutdown(wait=False)
        self._provider.shutdown()
