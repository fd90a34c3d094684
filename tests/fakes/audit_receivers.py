"""Real receivers on 127.0.0.1 for the audit sinks: syslog over TLS, OTLP/HTTP, OTLP/gRPC, S3.

Each can be stopped and started again on the same port (the kill-sink tests), keeps what it
received across restarts, and parses what it gets the way a strict receiver would: octet-
counted RFC 5424 frames, ``ExportLogsServiceRequest`` protobufs. The TLS material is made
at test time (``make_pki``); nothing secret lives in the repository.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gzip
import ipaddress
import json
import os
import re
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from obsigen.audit.events import AuditEvent
from obsigen.audit.recorder import AuditRecorder
from obsigen.audit.spool import SpooledSink
from tests.fakes.key_services import free_port

LOOPBACK = "127.0.0.1"


async def wait_until(
    predicate: Callable[[], bool], timeout_s: float, *, interval_s: float = 0.02
) -> bool:
    """Poll ``predicate`` until true or ``timeout_s`` passed; returns its last value."""
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(interval_s)


# --- TLS material ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing here: a client trusting it must refuse the server


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _ca(common_name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(
    common_name: str,
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    usage: x509.ObjectIdentifier,
    *,
    server: bool,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(LOOPBACK)), x509.DNSName("localhost")]
            ),
            critical=False,
        )
    return builder.sign(ca_key, hashes.SHA256()), key


def make_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = _ca("obsigen test CA")
    other, _ = _ca("some other CA")
    server, server_key = _leaf("receiver", ca, ca_key, ExtendedKeyUsageOID.SERVER_AUTH, server=True)
    client, client_key = _leaf("obsigen", ca, ca_key, ExtendedKeyUsageOID.CLIENT_AUTH, server=False)
    pem = serialization.Encoding.PEM
    pki = Pki(
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
        other_ca=directory / "other-ca.pem",
    )
    pki.ca.write_bytes(ca.public_bytes(pem))
    pki.other_ca.write_bytes(other.public_bytes(pem))
    pki.server_cert.write_bytes(server.public_bytes(pem))
    pki.client_cert.write_bytes(client.public_bytes(pem))
    _write_key(pki.server_key, server_key)
    _write_key(pki.client_key, client_key)
    return pki


# --- the receivers' common shape ---------------------------------------------------------------


class Receiver(Protocol):
    port: int

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def event_ids(self) -> set[str]: ...

    def received_count(self) -> int: ...


# --- syslog over TLS (RFC 5425) ----------------------------------------------------------------

_HEADER = re.compile(
    rb"<(?P<pri>\d{1,3})>1 (?P<ts>\S+) (?P<host>\S+) (?P<app>\S+) (?P<procid>\S+) (?P<msgid>\S+) "
)
_SD_PARAM = re.compile(r' ([^= \]"]{1,32})="((?:[^"\\\]]|\\["\\\]])*)"')
BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class SyslogMessage:
    pri: int
    timestamp: str
    hostname: str
    app_name: str
    procid: str
    msgid: str
    structured_data: dict[str, dict[str, str]]
    msg: dict[str, Any]
    raw: bytes

    @property
    def facility(self) -> int:
        return self.pri // 8

    @property
    def severity(self) -> int:
        return self.pri % 8


def parse_rfc5424(raw: bytes) -> SyslogMessage:
    """Strict enough to catch a malformed header, SD element or MSG (RFC 5424 section 6)."""
    header = _HEADER.match(raw)
    if header is None:
        raise ValueError(f"not an RFC 5424 header: {raw[:80]!r}")
    rest = raw[header.end() :]
    elements: dict[str, dict[str, str]] = {}
    if rest.startswith(b"-"):
        rest = rest[1:]
    else:
        while rest.startswith(b"["):
            end = _sd_element_end(rest)
            text = rest[1:end].decode("utf-8")
            sd_id, _, params = text.partition(" ")
            parsed = _SD_PARAM.findall(" " + params if params else "")
            rebuilt = "".join(f' {name}="{value}"' for name, value in parsed)
            if rebuilt != (" " + params if params else ""):
                raise ValueError(f"malformed SD-PARAMs in [{text}]")
            elements[sd_id] = {name: re.sub(r'\\(["\\\]])', r"\1", value) for name, value in parsed}
            rest = rest[end + 1 :]
    if not rest.startswith(b" " + BOM):
        raise ValueError("MSG must follow a space and start with the UTF-8 BOM")
    msg = json.loads(rest[1 + len(BOM) :].decode("utf-8"))
    ts = header["ts"].decode()
    dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))  # a valid RFC 3339 time
    return SyslogMessage(
        pri=int(header["pri"]),
        timestamp=ts,
        hostname=header["host"].decode(),
        app_name=header["app"].decode(),
        procid=header["procid"].decode(),
        msgid=header["msgid"].decode(),
        structured_data=elements,
        msg=msg,
        raw=raw,
    )


def _sd_element_end(data: bytes) -> int:
    escaped = quoted = False
    for index in range(1, len(data)):
        char = data[index : index + 1]
        if escaped:
            escaped = False
        elif char == b"\\":
            escaped = True
        elif char == b'"':
            quoted = not quoted
        elif char == b"]" and not quoted:
            return index
    raise ValueError("unterminated SD-ELEMENT")


def read_frames(buffer: bytearray) -> Iterator[bytes]:
    """Take complete octet-counted frames (``MSG-LEN SP MSG``) off the front of ``buffer``."""
    while True:
        space = buffer.find(b" ", 0, 12)
        if space < 0:
            if len(buffer) >= 12:
                raise ValueError(f"no MSG-LEN at {bytes(buffer[:12])!r}")
            return
        length_text = bytes(buffer[:space])
        if not length_text.isdigit() or length_text.startswith(b"0"):
            raise ValueError(f"bad MSG-LEN {length_text!r}")
        length = int(length_text)
        if len(buffer) < space + 1 + length:
            return
        frame = bytes(buffer[space + 1 : space + 1 + length])
        del buffer[: space + 1 + length]
        yield frame


class _SyslogServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    block_on_close = False


class SyslogTlsReceiver:
    """RFC 5425 receiver: TLS 1.2+, octet-counted frames, every message parsed strictly."""

    def __init__(self, pki: Pki, *, require_client_cert: bool = False, port: int = 0) -> None:
        self.port = port or free_port()
        self.messages: list[SyslogMessage] = []
        self.errors: list[str] = []
        self.client_subjects: list[str] = []
        self._pki = pki
        self._require_client_cert = require_client_cert
        self._lock = threading.Lock()
        self._server: _SyslogServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()

    def _context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self._pki.server_cert, self._pki.server_key)
        if self._require_client_cert:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(self._pki.ca)
        return context

    def start(self) -> None:
        context = self._context()
        receiver = self
        self._stopping.clear()

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                receiver._serve(self.request, context)

        server = _SyslogServer((LOOPBACK, self.port), Handler)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.daemon = True
        self._thread.start()

    def _serve(self, raw: socket.socket, context: ssl.SSLContext) -> None:
        raw.settimeout(5)
        try:
            conn = context.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            with self._lock:
                self.errors.append(f"handshake: {exc}")
            return
        with self._lock:
            self._connections.add(conn)
            peer = conn.getpeercert()
            if peer:
                self.client_subjects.append(str(peer.get("subject")))
        buffer = bytearray()
        conn.settimeout(0.1)
        try:
            while not self._stopping.is_set():
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                except (OSError, ssl.SSLError):
                    return
                if not data:
                    return
                buffer += data
                for frame in read_frames(buffer):
                    message = parse_rfc5424(frame)
                    with self._lock:
                        self.messages.append(message)
        except ValueError as exc:
            with self._lock:
                self.errors.append(str(exc))
        finally:
            with self._lock:
                self._connections.discard(conn)
            with contextlib.suppress(OSError):
                conn.close()

    def stop(self) -> None:
        """Gone: the listener and every connection closed; a sender sees refusals."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                conn.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def event_ids(self) -> set[str]:
        with self._lock:
            return {str(m.msg["event_id"]) for m in self.messages}

    def received_count(self) -> int:
        with self._lock:
            return len(self.messages)


# --- OTLP over HTTP ----------------------------------------------------------------------------


def any_value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


@dataclass
class OtlpLog:
    resource: dict[str, Any]
    scope: str
    body: str
    attributes: dict[str, Any]
    severity_number: int
    severity_text: str
    time_unix_nano: int
    event_name: str

    @property
    def event(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.body)
        return value


def decode_logs(request: logs_service_pb2.ExportLogsServiceRequest) -> list[OtlpLog]:
    logs: list[OtlpLog] = []
    for resource_logs in request.resource_logs:
        resource = {kv.key: any_value(kv.value) for kv in resource_logs.resource.attributes}
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                logs.append(
                    OtlpLog(
                        resource=resource,
                        scope=scope_logs.scope.name,
                        body=str(any_value(record.body)),
                        attributes={kv.key: any_value(kv.value) for kv in record.attributes},
                        severity_number=int(record.severity_number),
                        severity_text=record.severity_text,
                        time_unix_nano=int(record.time_unix_nano),
                        event_name=record.event_name,
                    )
                )
    return logs


@dataclass
class _LogStore:
    logs: list[OtlpLog] = field(default_factory=list)
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, request: logs_service_pb2.ExportLogsServiceRequest) -> None:
        decoded = decode_logs(request)
        with self.lock:
            self.logs.extend(decoded)
            self.requests += 1

    def event_ids(self) -> set[str]:
        with self.lock:
            return {str(log.attributes["obsigen.event_id"]) for log in self.logs}

    def count(self) -> int:
        with self.lock:
            return len(self.logs)


class OtlpHttpReceiver:
    """An OTLP/HTTP collector endpoint: POST /v1/logs with a binary protobuf body."""

    def __init__(self, *, port: int = 0) -> None:
        self.port = port or free_port()
        self.store = _LogStore()
        self.content_types: list[str] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/v1/logs"

    @property
    def logs(self) -> list[OtlpLog]:
        with self.store.lock:
            return list(self.store.logs)

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            # HTTP/1.0: no kept-alive connection outlives a stop.
            protocol_version = "HTTP/1.0"

            def do_POST(self) -> None:
                if self.path != "/v1/logs":
                    self.send_error(404)
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                receiver.content_types.append(self.headers.get("Content-Type", ""))
                request = logs_service_pb2.ExportLogsServiceRequest()
                request.ParseFromString(body)
                receiver.store.add(request)
                reply = logs_service_pb2.ExportLogsServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                return

        server = ThreadingHTTPServer((LOOPBACK, self.port), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.daemon = True
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def event_ids(self) -> set[str]:
        return self.store.event_ids()

    def received_count(self) -> int:
        return self.store.count()


# --- OTLP over gRPC ----------------------------------------------------------------------------


class _LogsService(logs_service_pb2_grpc.LogsServiceServicer):  # type: ignore[misc]
    def __init__(self, store: _LogStore) -> None:
        self._store = store

    def Export(  # noqa: N802 - the generated service's method name
        self, request: logs_service_pb2.ExportLogsServiceRequest, context: Any
    ) -> logs_service_pb2.ExportLogsServiceResponse:
        self._store.add(request)
        return logs_service_pb2.ExportLogsServiceResponse()


class OtlpGrpcReceiver:
    """A gRPC server implementing opentelemetry.proto.collector.logs.v1.LogsService."""

    def __init__(self, *, port: int = 0) -> None:
        self.port = port or free_port()
        self.store = _LogStore()
        self._server: grpc.Server | None = None

    @property
    def logs(self) -> list[OtlpLog]:
        with self.store.lock:
            return list(self.store.logs)

    def start(self) -> None:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(_LogsService(self.store), server)
        bound = server.add_insecure_port(f"{LOOPBACK}:{self.port}")
        if bound != self.port:
            raise RuntimeError(f"gRPC receiver could not bind {LOOPBACK}:{self.port}")
        server.start()
        self._server = server

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None).wait(timeout=5)
            self._server = None

    def event_ids(self) -> set[str]:
        return self.store.event_ids()

    def received_count(self) -> int:
        return self.store.count()


# --- S3 (moto) ---------------------------------------------------------------------------------

S3_REGION = "eu-central-1"
_MOTO_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


@contextlib.contextmanager
def aws_test_env() -> Iterator[None]:
    """Dummy credentials, so boto3 never looks further (instance metadata, ~/.aws)."""
    saved = {name: os.environ.get(name) for name in _MOTO_ENV}
    os.environ.update(_MOTO_ENV)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class MotoS3Receiver:
    """``moto_server`` on 127.0.0.1, restartable on its port; state dies with the process,
    so what it held is read before each stop and kept here."""

    def __init__(self, bucket: str, *, object_lock: bool = False, port: int = 0) -> None:
        self.port = port or free_port()
        self.bucket = bucket
        self.object_lock = object_lock
        self._proc: subprocess.Popen[bytes] | None = None
        self._kept: dict[str, bytes] = {}

    @property
    def endpoint_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing"
        ).client(
            "s3",
            region_name=S3_REGION,
            endpoint_url=self.endpoint_url,
            config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=5),
        )

    def start(self, start_timeout_s: float = 60.0) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, **_MOTO_ENV},
        )
        deadline = time.monotonic() + start_timeout_s
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"moto_server exited with {self._proc.returncode}")
            try:
                socket.create_connection((LOOPBACK, self.port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("moto_server did not start in time") from None
                time.sleep(0.1)
        kwargs: dict[str, Any] = {
            "Bucket": self.bucket,
            "CreateBucketConfiguration": {"LocationConstraint": S3_REGION},
        }
        if self.object_lock:
            kwargs["ObjectLockEnabledForBucket"] = True
        self.client().create_bucket(**kwargs)

    def objects(self) -> dict[str, bytes]:
        """Every object ever received (those from before a restart included)."""
        if self._proc is not None and self._proc.poll() is None:
            client = self.client()
            paginator = client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket):
                for item in page.get("Contents", []):
                    if item["Key"] not in self._kept:
                        body = client.get_object(Bucket=self.bucket, Key=item["Key"])["Body"]
                        self._kept[item["Key"]] = body.read()
        return dict(self._kept)

    def kill(self) -> None:
        """SIGKILL, nothing read first: what it held dies with it (a real store's disk would
        keep it; tests that need that put their own copy back after ``start``)."""
        if self._proc is None:
            return
        proc, self._proc = self._proc, None
        proc.kill()
        proc.wait()

    def stop(self) -> None:
        if self._proc is None:
            return
        with contextlib.suppress(Exception):
            self.objects()
        proc, self._proc = self._proc, None
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def event_ids(self) -> set[str]:
        ids: set[str] = set()
        for body in self.objects().values():
            ids.update(json.loads(line)["event_id"] for line in body.decode().splitlines())
        return ids

    def received_count(self) -> int:
        return sum(len(body.decode().splitlines()) for body in self.objects().values())


# --- the kill-sink scenario --------------------------------------------------------------------


def audit_event(n: int, *, tenant_id: str = "tenant-a", phase: str = "") -> AuditEvent:
    return AuditEvent(
        type="chat.prompt",
        tenant_id=tenant_id,
        actor={"kind": "user", "id": "u1"},
        outcome="success",
        interaction_id=f"i-{phase}-{n}",
        data={"n": n, "phase": phase, "prompt_digest": f"sha256:{n:064x}"},
    )


@dataclass
class KillSinkResult:
    sent: list[str]
    received: set[str]
    emit_latencies_down: list[float]
    spooled_while_down: int
    failed_attempts: int
    catch_up_s: float
    duplicates: int

    @property
    def max_emit_down_s(self) -> float:
        return max(self.emit_latencies_down)


async def kill_sink_scenario(
    recorder: AuditRecorder,
    sink: SpooledSink,
    receiver: Receiver,
    *,
    before: int = 20,
    during: int = 30,
    after: int = 10,
    deliver_timeout_s: float = 30.0,
    poll_s: float = 0.05,
) -> KillSinkResult:
    """Traffic, receiver killed, more traffic (spooled), receiver back, everything arrives.

    Receiver start/stop and reads run on threads: a blocked event loop would both slow the
    sink's delivery and inflate the emit times measured here.
    """

    async def arrived(ids: set[str]) -> bool:
        deadline = time.monotonic() + deliver_timeout_s
        while time.monotonic() < deadline:
            if ids <= await asyncio.to_thread(receiver.event_ids):
                return True
            await asyncio.sleep(poll_s)
        return False

    sent: list[str] = []
    for n in range(before):
        event = audit_event(n, phase="before")
        await recorder.record(event)
        sent.append(event.event_id)
    assert await arrived(set(sent)), "the receiver never got the first events"

    await asyncio.to_thread(receiver.stop)
    latencies: list[float] = []
    for n in range(during):
        event = audit_event(n, phase="down")
        started = time.perf_counter()
        await recorder.record(event)
        latencies.append(time.perf_counter() - started)
        sent.append(event.event_id)
        # Spread out, so the deliverer tries (and fails) while traffic goes on.
        await asyncio.sleep(0.01)
    assert await wait_until(lambda: sink.status().consecutive_failures > 0, deliver_timeout_s), (
        "the sink never noticed the receiver was gone"
    )
    spooled = await asyncio.to_thread(sink.pending_events)

    await asyncio.to_thread(receiver.start)
    restarted = time.monotonic()
    for n in range(after):
        event = audit_event(n, phase="after")
        await recorder.record(event)
        sent.append(event.event_id)
    assert await arrived(set(sent)), (
        f"missing after the restart: {len(set(sent) - receiver.event_ids())} of {len(sent)}"
    )
    catch_up = time.monotonic() - restarted
    received = await asyncio.to_thread(receiver.event_ids)
    count = await asyncio.to_thread(receiver.received_count)
    return KillSinkResult(
        sent=sent,
        received=received,
        emit_latencies_down=latencies,
        spooled_while_down=spooled,
        failed_attempts=sink.status().failed_attempts,
        catch_up_s=catch_up,
        duplicates=count - len(received),
    )
