"""The server's TLS context: TLS 1.2 or newer, forward-secret AEAD suites only (docs/edge.md).

Every check runs before the listener opens, so a wrong path, a readable key or a bad password
stops ``obsigen serve`` with one clear line instead of a half-started server.
"""

from __future__ import annotations

import ssl
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from obsigen.config import ServerSettings
from obsigen.secretref import resolve_secret

MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2
# TLS 1.2 suites: ECDHE key exchange (forward secrecy) with an AEAD cipher, nothing else. TLS 1.3
# suites are all of that kind already and are configured separately by OpenSSL.
TLS12_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    )
)


class TlsConfigError(ValueError):
    """TLS cannot be set up as configured; the message says what to fix."""


def _no_password() -> str:
    raise TlsConfigError("server.tls_key is encrypted: set server.tls_key_password")


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path


def file_reference(ref: str, setting: str) -> Path:
    """The path named by a plain path or a ``file:`` reference (the settings refuse others)."""
    path = ref.removeprefix("file:")
    if not path:
        raise TlsConfigError(f"{setting} names no file")
    return Path(path)


def check_key_permissions(key: Path) -> None:
    """Refuse a private key that anyone but its owner can read or write."""
    try:
        info = key.stat()
    except FileNotFoundError:
        raise TlsConfigError(f"server.tls_key: file not found: {key}") from None
    except OSError as exc:
        raise TlsConfigError(f"server.tls_key: cannot access {key}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise TlsConfigError(f"server.tls_key: {key} is not a regular file")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise TlsConfigError(
            f"server.tls_key: {key} has mode {mode:04o}; a private key must be readable by its "
            f"owner only (chmod 600 {key})"
        )


def tls_files(server: ServerSettings) -> TlsFiles:
    cert = file_reference(server.tls_cert, "server.tls_cert")
    key = file_reference(server.tls_key, "server.tls_key")
    if not cert.is_file():
        raise TlsConfigError(f"server.tls_cert: file not found: {cert}")
    check_key_permissions(key)
    return TlsFiles(cert, key)


def build_ssl_context(server: ServerSettings) -> ssl.SSLContext:
    """The server-side context for ``server``; TlsConfigError when TLS is not configured."""
    if not server.tls_enabled:
        raise TlsConfigError("TLS is not configured: set server.tls_cert and server.tls_key")
    files = tls_files(server)
    try:
        secret = resolve_secret(server.tls_key_password)
    except ValueError as exc:
        raise TlsConfigError(f"server.tls_key_password: {exc}") from None
    # Never None: OpenSSL would then prompt on the terminal for an encrypted key and hang a
    # server started by a supervisor.
    password: str | Callable[[], str] = secret or _no_password

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MINIMUM_VERSION
    context.set_ciphers(TLS12_CIPHERS)
    # CRIME: compression leaks secrets through ciphertext length. Renegotiation: client-started
    # renegotiation is a cheap CPU-exhaustion lever and has had injection flaws. Tickets: the
    # ticket key lives as long as the process and would decrypt every resumed TLS 1.2 session.
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_TICKET
    try:
        context.load_cert_chain(files.cert, files.key, password=password)
    except ssl.SSLError as exc:
        raise TlsConfigError(
            f"cannot load the TLS certificate {files.cert} with key {files.key}: {exc.reason} "
            "(a key that does not match the certificate, a wrong or missing key password, "
            "or a file that is not PEM)"
        ) from None
    except OSError as exc:
        raise TlsConfigError(f"cannot read the TLS certificate or key: {exc.strerror}") from None
    return context
