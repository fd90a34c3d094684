"""Audit events as RFC 5424 syslog messages over TLS (RFC 5425), for SIEMs that take syslog.

Each event is one message: ``<PRI>1 TIMESTAMP HOSTNAME obsigen PROCID <type> [SD] BOM<JSON>``.
PRI is the facility (default 13, "log audit") and a severity from the event's; the structured
data element ``obsigen@32473`` carries the fields a SIEM filters on (event_id, tenant, type,
outcome, severity, interaction), and MSG the whole event as JSON. Messages are framed by octet
counting (``MSG-LEN SP MSG``, RFC 6587 3.4.1 / RFC 5425 4.3), so a message may hold newlines.

TLS 1.2 or later; the server's certificate is verified against the configured CA file (or the
system's CAs) and must name the host; a client certificate is presented when configured.

Syslog over TLS has no application-level acknowledgement. A batch counts as delivered once
the receiver's TCP stack has acknowledged every byte (Linux ``SIOCOUTQ`` reaches zero); a
connection that dies before that fails the batch, which the spool sends again. Events that a
receiver had acknowledged but not yet processed when it crashed are beyond what the protocol
can tell; a SIEM that must not lose any should take OTLP or S3.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import socket
import ssl
import struct
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from obsigen import __version__
from obsigen.audit.spool import DeliveryError, run_blocking
from obsigen.secretref import resolve_secret

# RFC 5612 reserves 32473 for documentation; a deployment with its own IANA number sets sd_id.
DEFAULT_SD_ID = "obsigen@32473"
DEFAULT_FACILITY = 13  # "log audit" (RFC 5424 table 1)
APP_NAME = "obsigen"
BOM = b"\xef\xbb\xbf"

FACILITIES: dict[str, int] = {
    "kern": 0,
    "user": 1,
    "auth": 4,
    "authpriv": 10,
    "audit": 13,
    **{f"local{n}": 16 + n for n in range(8)},
}

# OCSF severity -> syslog severity (RFC 5424 table 2).
SEVERITIES: dict[str, int] = {
    "critical": 2,
    "high": 3,
    "medium": 4,
    "low": 5,
    "informational": 6,
}

_TIOCOUTQ: int | None
try:
    import termios

    _TIOCOUTQ = termios.TIOCOUTQ
except (ImportError, AttributeError):  # not Linux: no way to see the peer's acknowledgements
    _TIOCOUTQ = None


@dataclass(frozen=True, slots=True)
class SyslogConfig:
    host: str
    port: int = 6514
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    key_password: str = ""  # a secret reference (env:NAME, file:/path), never the password
    facility: int = DEFAULT_FACILITY
    sd_id: str = DEFAULT_SD_ID
    hostname: str = ""  # HOSTNAME field; empty: this machine's name
    timeout_s: float = 10.0

    @property
    def target(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"syslog+tls://{host}:{self.port}"


def make_ssl_context(config: SyslogConfig) -> ssl.SSLContext:
    """The client context: refuses what cannot be verified, at start rather than per event."""
    for label, path in (("ca", config.ca_file), ("cert", config.cert_file)):
        if path is not None and not path.is_file():
            raise ValueError(f"audit sink {config.target}: {label} file {path} not found")
    if (config.cert_file is None) != (config.key_file is None):
        raise ValueError(f"audit sink {config.target}: cert and key go together")
    context = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH, cafile=str(config.ca_file) if config.ca_file else None
    )
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    if config.cert_file is not None and config.key_file is not None:
        password = resolve_secret(config.key_password) if config.key_password else None
        context.load_cert_chain(config.cert_file, config.key_file, password=password)
    return context


def _printable(text: str, limit: int) -> str:
    # HOSTNAME, APP-NAME, PROCID, MSGID: 1*N PRINTUSASCII (33..126), "-" when empty.
    cleaned = "".join(ch if 33 <= ord(ch) <= 126 else "_" for ch in text)[:limit]
    return cleaned or "-"


def _sd_name(text: str) -> str:
    # SD-NAME: PRINTUSASCII except '=', SP, ']' and '"', at most 32.
    cleaned = "".join(ch for ch in text if 33 <= ord(ch) <= 126 and ch not in '=]"')[:32]
    if not cleaned:
        raise ValueError(f"{text!r} is not a usable SD-ID")
    return cleaned


def _param_value(value: object) -> str:
    text = str(value)
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _timestamp(value: object) -> str:
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return "-"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Rfc5424Formatter:
    def __init__(
        self,
        *,
        facility: int = DEFAULT_FACILITY,
        hostname: str = "",
        sd_id: str = DEFAULT_SD_ID,
        procid: str = "",
    ) -> None:
        if not 0 <= facility <= 23:
            raise ValueError("syslog facility must be 0..23")
        self._facility = facility
        self._hostname = _printable(hostname or socket.gethostname(), 255)
        self._sd_id = _sd_name(sd_id)
        self._procid = _printable(procid or str(os.getpid()), 128)

    def format(self, record: Mapping[str, Any]) -> bytes:
        severity = SEVERITIES.get(str(record.get("severity", "")), 6)
        pri = self._facility * 8 + severity
        raw_actor = record.get("actor")
        actor: Mapping[str, Any] = raw_actor if isinstance(raw_actor, Mapping) else {}
        params = {
            "event_id": record.get("event_id"),
            "tenant_id": record.get("tenant_id"),
            "type": record.get("type"),
            "outcome": record.get("outcome"),
            "severity": record.get("severity"),
            "class_uid": record.get("class_uid"),
            "interaction_id": record.get("interaction_id"),
            "actor_kind": actor.get("kind"),
            "actor_id": actor.get("id"),
        }
        sd_params = "".join(
            f' {name}="{_param_value(value)}"' for name, value in params.items() if value
        )
        origin = f'[origin software="{APP_NAME}" swVersion="{_param_value(__version__)}"]'
        header = (
            f"<{pri}>1 {_timestamp(record.get('time'))} {self._hostname} {APP_NAME} "
            f"{self._procid} {_printable(str(record.get('type', '')), 32)} "
            f"[{self._sd_id}{sd_params}]{origin} "
        )
        body = _json(record)
        return header.encode("utf-8") + BOM + body


def _json(record: Mapping[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def frame(message: bytes) -> bytes:
    """Octet counting: ``MSG-LEN SP SYSLOG-MSG`` (RFC 5425 4.3)."""
    return str(len(message)).encode("ascii") + b" " + message


class SyslogTlsSender:
    """Sends batches over one TLS connection, reconnecting after any failure.

    Blocking sockets on a thread of its own: the timeouts are plain, and a receiver that
    hangs holds up nothing but this sink's deliveries.
    """

    def __init__(self, config: SyslogConfig) -> None:
        self._config = config
        self._context = make_ssl_context(config)
        self._formatter = Rfc5424Formatter(
            facility=config.facility, hostname=config.hostname, sd_id=config.sd_id
        )
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="audit-syslog")
        self._sock: ssl.SSLSocket | None = None
        self._closed = False

    @property
    def target(self) -> str:
        return self._config.target

    @property
    def formatter(self) -> Rfc5424Formatter:
        return self._formatter

    async def send(self, records: Sequence[Mapping[str, Any]]) -> None:
        payload = b"".join(frame(self._formatter.format(record)) for record in records)
        await run_blocking(self._executor, self._send_blocking, payload)

    def _send_blocking(self, payload: bytes) -> None:
        try:
            sock = self._connected()
            sock.sendall(payload)
            self._wait_acknowledged(sock)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            self._disconnect()
            raise DeliveryError(f"syslog to {self.target}: {exc}") from exc

    def _connected(self) -> ssl.SSLSocket:
        if self._sock is not None and self._peer_closed(self._sock):
            self._disconnect()
        if self._sock is None:
            timeout = self._config.timeout_s
            raw = socket.create_connection((self._config.host, self._config.port), timeout)
            try:
                self._sock = self._context.wrap_socket(raw, server_hostname=self._config.host)
            except BaseException:
                raw.close()
                raise
            self._sock.settimeout(timeout)
        return self._sock

    def _peer_closed(self, sock: ssl.SSLSocket) -> bool:
        """True when the receiver has closed (or reset) the connection."""
        try:
            readable, _, _ = select.select([sock], [], [], 0)
        except (OSError, ValueError):
            return True
        if not readable and not sock.pending():
            return False
        sock.settimeout(0)
        try:
            # A syslog receiver sends nothing; whatever comes is ignored, EOF is what counts.
            return sock.recv(4096) == b""
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            return False
        except OSError:
            return True
        finally:
            with contextlib.suppress(OSError):
                sock.settimeout(self._config.timeout_s)

    def _wait_acknowledged(self, sock: ssl.SSLSocket) -> None:
        if _TIOCOUTQ is None:
            return
        deadline = time.monotonic() + self._config.timeout_s
        pause = 0.0005
        while True:
            queued = struct.unpack("i", fcntl.ioctl(sock.fileno(), _TIOCOUTQ, b"\0\0\0\0"))[0]
            if queued == 0:
                return
            if self._peer_closed(sock):
                raise ConnectionError("the receiver closed the connection before acknowledging")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the receiver left {queued} bytes unacknowledged")
            time.sleep(pause)
            pause = min(pause * 2, 0.05)

    def _disconnect(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        # On the sender's thread, after any send in progress (bounded by timeout_s).
        self._executor.submit(self._disconnect)
        self._executor.shutdown(wait=False)
