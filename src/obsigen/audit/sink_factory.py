"""Audit sinks from ``[audit] sinks``: the record (database), local copies, and SIEM copies.

Forms (docs/audit.md, "Sinks")::

    database                                  the hash-chained record (synchronous)
    file                                      JSONL under data_dir/audit (synchronous)
    syslog+tls://HOST[:6514]?ca=/ca.pem[&cert=/c.pem&key=/k.pem&key_password=env:NAME]
    otlp+http://HOST:PORT[/v1/logs]           (otlp+https:// with ca=, cert=, key=)
    otlp+grpc://HOST:PORT                     (otlp+grpcs:// or tls=true for TLS; ca=, ...)
    s3://BUCKET?region=..&endpoint_url=..&prefix=..&object_lock_days=N&object_lock_mode=..

Every remote sink sits behind its own disk spool in ``data_dir/audit-spool/<name>``; these
query parameters tune it on any remote sink: ``name`` (the spool's directory name),
``spool_max_mb``, ``fsync`` (always|interval|never), ``batch``, ``timeout_s``, ``backoff_s``,
``max_backoff_s``, ``close_timeout_s``, ``emit_timeout_s``. Credentials are references only
(``env:NAME``, ``file:/path``, ``awssm:SECRET-ID``; percent-encode one that carries its own
``?``/``&``/``#``), never values in the URI. Anything unknown is refused at start.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from obsigen.audit.db_store import DatabaseAuditSink
from obsigen.audit.file_sink import FileAuditSink
from obsigen.audit.interfaces import AuditSink
from obsigen.audit.spool import BatchSender, SpooledSink, SpoolPolicy
from obsigen.config import Settings
from obsigen.secretref import VAULT_UNSUPPORTED, is_reference

logger = logging.getLogger("obsigen.audit.sinks")

SPOOL_DIR = "audit-spool"
SUPPORTED = (
    '"database", "file", "syslog+tls://HOST:PORT?ca=/path", "otlp+http://HOST:PORT/v1/logs", '
    '"otlp+https://…", "otlp+grpc://HOST:PORT", "otlp+grpcs://…", "s3://BUCKET?region=…"'
)
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
_SPOOL_PARAMS = frozenset(
    {
        "name",
        "spool_max_mb",
        "fsync",
        "batch",
        "timeout_s",
        "backoff_s",
        "max_backoff_s",
        "close_timeout_s",
        "emit_timeout_s",
    }
)


class AuditSinkConfigError(ValueError):
    """An ``[audit] sinks`` entry that cannot work; the message says which and why."""


def make_audit_sinks(settings: Settings) -> list[AuditSink]:
    sinks: list[AuditSink] = []
    spool_names: set[str] = set()
    for spec in settings.audit.sinks:
        sink = _make_sink(spec.strip(), settings)
        if isinstance(sink, SpooledSink):
            if sink.name in spool_names:
                raise AuditSinkConfigError(
                    f"audit sink {redact(spec)}: another sink already spools in "
                    f"{SPOOL_DIR}/{sink.name}; give one of them ?name=…"
                )
            spool_names.add(sink.name)
        sinks.append(sink)
    _warn_orphaned_spools(settings.paths.data_dir / SPOOL_DIR, spool_names)
    return sinks


def _make_sink(spec: str, settings: Settings) -> AuditSink:
    if spec == "database":
        return DatabaseAuditSink.from_settings(settings)
    if spec == "file":
        return FileAuditSink(settings.paths.data_dir / "audit")
    scheme = spec.partition("://")[0].lower() if "://" in spec else ""
    factory = _REMOTE.get(scheme)
    if factory is None:
        raise AuditSinkConfigError(
            f"audit sink {redact(spec)!r} is not supported; use one of {SUPPORTED}"
        )
    parts = urlsplit(spec)
    if parts.username is not None or parts.password is not None:
        raise AuditSinkConfigError(
            f"audit sink {redact(spec)}: credentials do not belong in the URI; "
            "give references (env:NAME, file:/path, awssm:SECRET-ID) in the parameters the docs "
            "name"
        )
    if parts.fragment:
        raise AuditSinkConfigError(f"audit sink {redact(spec)}: a URI fragment means nothing here")
    query = _Query(spec, parts.query)
    sender, default_name = factory(spec, parts, query, settings)
    name = _safe_name(query.text("name", default_name))
    policy = _policy(spec, query)
    query.done()
    spool_root = settings.paths.data_dir / SPOOL_DIR
    spool_root.mkdir(parents=True, exist_ok=True, mode=0o700)
    return SpooledSink(name, spool_root / name, sender, policy)


def redact(spec: str) -> str:
    """The URI without its query (which may name files) or userinfo, for messages."""
    parts = urlsplit(spec)
    if not parts.scheme:
        return spec.split("?")[0]
    # netloc without userinfo, as written (port included even when it is not valid).
    netloc = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{netloc}{parts.path}"


def _safe_name(text: str) -> str:
    name = _SAFE_NAME.sub("_", text).strip("._") or "sink"
    return name[:100]


class _Query:
    """Query parameters, each taken at most once; leftovers are refused (typos, not ignored)."""

    def __init__(self, spec: str, query: str) -> None:
        self._spec = spec
        self._values: dict[str, str] = {}
        for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
            if key in self._values:
                raise self.error(f"parameter {key} is given twice")
            self._values[key] = value

    def error(self, message: str) -> AuditSinkConfigError:
        return AuditSinkConfigError(f"audit sink {redact(self._spec)}: {message}")

    def text(self, key: str, default: str = "") -> str:
        return self._values.pop(key, default)

    def path(self, key: str) -> Path | None:
        value = self.text(key)
        if not value:
            return None
        path = Path(value)
        if not path.is_file():
            raise self.error(f"{key} file {value} not found")
        return path

    def secret_ref(self, key: str) -> str:
        value = self.text(key)
        # Every kind resolve_secret knows, as for every other secret setting. Messages never
        # echo the value: it may be the secret itself.
        if value and not is_reference(value):
            if value.partition(":")[0] == "vault":
                raise self.error(f"{key}: {VAULT_UNSUPPORTED}")
            raise self.error(
                f"{key} must be a reference (env:NAME, file:/path or awssm:SECRET-ID), not a value"
            )
        return value

    def number(self, key: str, default: float, *, minimum: float = 0.0) -> float:
        value = self.text(key)
        if not value:
            return default
        try:
            number = float(value)
        except ValueError:
            raise self.error(f"{key} must be a number, not {value!r}") from None
        if not number > minimum:
            raise self.error(f"{key} must be greater than {minimum:g}")
        return number

    def integer(self, key: str, default: int, *, minimum: int = 0) -> int:
        value = self.text(key)
        if not value:
            return default
        try:
            number = int(value)
        except ValueError:
            raise self.error(f"{key} must be a whole number, not {value!r}") from None
        if number < minimum:
            raise self.error(f"{key} must be at least {minimum}")
        return number

    def flag(self, key: str, default: bool = False) -> bool:
        value = self.text(key).lower()
        if not value:
            return default
        if value in ("1", "true", "yes", "on"):
            return True
        if value in ("0", "false", "no", "off"):
            return False
        raise self.error(f"{key} must be true or false, not {value!r}")

    def peek_timeout(self, default: float) -> float:
        value = self._values.get("timeout_s", "")
        try:
            return float(value) if value else default
        except ValueError:
            raise self.error(f"timeout_s must be a number, not {value!r}") from None

    def done(self) -> None:
        if self._values:
            unknown = ", ".join(sorted(self._values))
            raise self.error(f"unknown parameter(s) {unknown}")


def _policy(spec: str, query: _Query) -> SpoolPolicy:
    timeout = query.number("timeout_s", 10.0)
    fsync = query.text("fsync", "always")
    if fsync not in ("always", "interval", "never"):
        raise query.error("fsync must be always, interval or never")
    defaults = SpoolPolicy()
    backoff = query.number("backoff_s", defaults.initial_backoff_s)
    try:
        return SpoolPolicy(
            max_bytes=int(query.number("spool_max_mb", defaults.max_bytes / 2**20) * 2**20),
            fsync=fsync,  # type: ignore[arg-type]  # checked just above
            emit_timeout_s=query.number("emit_timeout_s", defaults.emit_timeout_s),
            batch_events=query.integer("batch", defaults.batch_events, minimum=1),
            # A sender's own timeouts come first (connect, send, acknowledgement); this only
            # catches one that hangs past all of them.
            attempt_timeout_s=3 * timeout + 5,
            initial_backoff_s=backoff,
            max_backoff_s=query.number("max_backoff_s", max(defaults.max_backoff_s, backoff)),
            close_timeout_s=query.number("close_timeout_s", defaults.close_timeout_s, minimum=-1),
        )
    except ValueError as exc:
        raise query.error(str(exc)) from None


# --- remote sinks ------------------------------------------------------------------------------

SenderFactory = Callable[[str, Any, _Query, Settings], tuple[BatchSender, str]]


def _host_port(spec: str, parts: Any, default_port: int | None) -> tuple[str, int]:
    host = parts.hostname
    if not host:
        raise AuditSinkConfigError(f"audit sink {redact(spec)}: the URI names no host")
    try:
        port = parts.port
    except ValueError:
        raise AuditSinkConfigError(f"audit sink {redact(spec)}: the port is not valid") from None
    if port is None:
        if default_port is None:
            raise AuditSinkConfigError(f"audit sink {redact(spec)}: the URI names no port")
        port = default_port
    return str(host), int(port)


def _syslog(spec: str, parts: Any, query: _Query, settings: Settings) -> tuple[BatchSender, str]:
    from obsigen.audit.syslog_sink import FACILITIES, SyslogConfig, SyslogTlsSender

    host, port = _host_port(spec, parts, 6514)
    if parts.path not in ("", "/"):
        raise query.error("a syslog URI has no path")
    facility_text = query.text("facility", "audit")
    facility = (
        int(facility_text) if facility_text.isdigit() else FACILITIES.get(facility_text.lower())
    )
    if facility is None or not 0 <= facility <= 23:
        raise query.error(f"facility must be 0..23 or one of {', '.join(FACILITIES)}")
    config = SyslogConfig(
        host=host,
        port=port,
        ca_file=query.path("ca"),
        cert_file=query.path("cert"),
        key_file=query.path("key"),
        key_password=query.secret_ref("key_password"),
        facility=facility,
        sd_id=query.text("sd_id", "obsigen@32473"),
        hostname=query.text("hostname"),
        timeout_s=query.peek_timeout(10.0),
    )
    try:
        return SyslogTlsSender(config), f"syslog-{host}-{port}"
    except (ValueError, OSError) as exc:
        raise query.error(f"TLS set-up failed: {exc}") from None


def _otlp(spec: str, parts: Any, query: _Query, settings: Settings) -> tuple[BatchSender, str]:
    from obsigen.audit.otlp_sink import OtlpConfig, OtlpLogSender, resource_attributes

    scheme = parts.scheme.lower()
    transport = scheme.removeprefix("otlp+")
    host, port = _host_port(spec, parts, None)
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    compression = query.text("compression", "none")
    if compression not in ("none", "gzip"):
        raise query.error("compression must be none or gzip")
    if transport in ("http", "https"):
        path = parts.path or "/v1/logs"
        endpoint, protocol, tls = f"{transport}://{netloc}{path}", "http", transport == "https"
    else:
        if parts.path not in ("", "/"):
            raise query.error("an OTLP/gRPC URI has no path")
        protocol = "grpc"
        tls = query.flag("tls", transport == "grpcs")
        endpoint = netloc
    config = OtlpConfig(
        protocol=protocol,  # type: ignore[arg-type]  # one of the two, by construction
        endpoint=endpoint,
        tls=tls,
        ca_file=query.path("ca"),
        cert_file=query.path("cert"),
        key_file=query.path("key"),
        headers=query.secret_ref("headers"),
        timeout_s=query.peek_timeout(10.0),
        compression=compression,  # type: ignore[arg-type]  # checked above
        resource_attributes=resource_attributes(settings.residency.region),
    )
    if not tls and (config.ca_file or config.cert_file):
        raise query.error("ca/cert/key need TLS (otlp+https://, otlp+grpcs:// or tls=true)")
    try:
        return OtlpLogSender(config), f"otlp-{protocol}-{host}-{port}"
    except (ValueError, OSError) as exc:
        raise query.error(str(exc)) from None


def _s3(spec: str, parts: Any, query: _Query, settings: Settings) -> tuple[BatchSender, str]:
    from obsigen.audit.s3_sink import S3Config, S3Sender

    bucket = parts.netloc
    prefix = query.text("prefix", parts.path.lstrip("/"))
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    mode = query.text("object_lock_mode", "GOVERNANCE").upper()
    try:
        config = S3Config(
            bucket=bucket,
            prefix=prefix,
            region=query.text("region", settings.storage.region),
            endpoint_url=query.text("endpoint_url"),
            object_lock_days=query.integer("object_lock_days", 0),
            object_lock_mode=mode,  # type: ignore[arg-type]  # S3Config checks it
            access_key_id=query.secret_ref("access_key_id"),
            secret_access_key=query.secret_ref("secret_access_key"),
            timeout_s=query.peek_timeout(10.0),
        )
    except ValueError as exc:
        raise query.error(str(exc)) from None
    suffix = f"-{prefix.rstrip('/')}" if prefix else ""
    return S3Sender(config), f"s3-{bucket}{suffix}"


_REMOTE: dict[str, SenderFactory] = {
    "syslog+tls": _syslog,
    "otlp+http": _otlp,
    "otlp+https": _otlp,
    "otlp+grpc": _otlp,
    "otlp+grpcs": _otlp,
    "s3": _s3,
}


def _warn_orphaned_spools(root: Path, configured: set[str]) -> None:
    if not root.is_dir():
        return
    for directory in sorted(root.iterdir()):
        if not directory.is_dir() or directory.name in configured:
            continue
        spooled = sum(path.stat().st_size for path in directory.glob("*.seg"))
        if spooled:
            logger.warning(
                "audit spool %s holds %d bytes of undelivered events for a sink that is no "
                "longer configured; configure it again (same name) to deliver them",
                directory,
                spooled,
            )
