"""TLS: the context from obsigen.web.tls in a real uvicorn on loopback, and start-up refusals.

Certificates and keys are made here, per test session, with ``cryptography``; none is stored.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi import FastAPI

from obsigen.config import Settings
from obsigen.web.edge import install_edge
from obsigen.web.problems import install_problem_handlers
from obsigen.web.serve import serve, uvicorn_config
from obsigen.web.tls import TLS12_CIPHERS, TlsConfigError, build_ssl_context

IO_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Pki:
    cert: Path
    key: Path
    ca: Path  # the self-signed cert, as a client trusts it


def self_signed(directory: Path, *, password: bytes | None = None, name: str = "tls") -> Pki:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.touch(mode=0o600)
    key_path.chmod(0o600)
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    )
    return Pki(cert_path, key_path, cert_path)


def tls_settings(pki: Pki, **server: str) -> Settings:
    fields = {"tls_cert": str(pki.cert), "tls_key": f"file:{pki.key}", **server}
    return Settings.model_validate({"server": fields})


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return self_signed(tmp_path_factory.mktemp("pki"))


def tiny_app(settings: Settings) -> FastAPI:
    app = FastAPI()

    @app.get("/ok")
    async def ok() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/raises")
    async def raises() -> None:
        raise RuntimeError("a bug: the answer is still a 500 with every header")

    install_problem_handlers(app)
    install_edge(app, settings)
    return app


@pytest.fixture(scope="module")
def https_port(pki: Pki) -> Iterator[int]:
    """A real uvicorn with the production TLS context, on 127.0.0.1 and a free port."""
    import uvicorn

    settings = tls_settings(pki)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    config = uvicorn_config(
        tiny_app(settings),
        settings,
        port=port,
        log_level="critical",
        access_log=False,
        lifespan="off",
        http="h11",
        ws="none",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the TLS test server did not start")
            time.sleep(0.01)
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def client_context(pki: Pki) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca))
    context.check_hostname = True
    return context


def handshake(port: int, context: ssl.SSLContext) -> tuple[str | None, str]:
    """(protocol version, cipher name) of a completed handshake; raises if there is none."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT_S) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        cipher = tls.cipher()
        assert cipher is not None
        return tls.version(), cipher[0]


def legacy_client(maximum: ssl.TLSVersion, ciphers: str = "ALL:@SECLEVEL=0") -> ssl.SSLContext:
    # Lowered as far as this OpenSSL allows so that the client really offers the old protocol
    # and suites: a refusal then comes from the server, not from the client's own defaults.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_ciphers(ciphers)
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    with warnings.catch_warnings():
        # Python deprecates offering TLS 1.0/1.1, which is exactly what this client is for.
        warnings.simplefilter("ignore", DeprecationWarning)
        context.maximum_version = maximum
    return context


# --- the running server ------------------------------------------------------------------------


def test_a_tls12_client_gets_a_forward_secret_aead_suite(pki: Pki, https_port: int) -> None:
    context = client_context(pki)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    version, cipher = handshake(https_port, context)
    assert version == "TLSv1.2"
    assert cipher in TLS12_CIPHERS.split(":")
    assert cipher.startswith("ECDHE-")


def test_a_default_client_gets_tls13(pki: Pki, https_port: int) -> None:
    version, _ = handshake(https_port, client_context(pki))
    assert version == "TLSv1.3"


@pytest.mark.parametrize("maximum", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_tls10_and_tls11_clients_are_refused(https_port: int, maximum: ssl.TLSVersion) -> None:
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        handshake(https_port, legacy_client(maximum))


@pytest.mark.parametrize(
    "cipher",
    [
        "AES128-GCM-SHA256",  # RSA key exchange: no forward secrecy
        "ECDHE-ECDSA-AES128-SHA",  # CBC with SHA-1 MAC: not AEAD
        "ECDHE-ECDSA-AES256-SHA384",  # CBC: not AEAD
    ],
)
def test_tls12_suites_outside_the_list_are_refused(https_port: int, cipher: str) -> None:
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        handshake(https_port, legacy_client(ssl.TLSVersion.TLSv1_2, f"{cipher}:@SECLEVEL=0"))


def test_https_responses_carry_hsts_and_the_security_headers(pki: Pki, https_port: int) -> None:
    context = client_context(pki)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    with httpx.Client(verify=context, timeout=IO_TIMEOUT_S) as client:
        ok = client.get(f"https://127.0.0.1:{https_port}/ok")
        missing = client.get(f"https://127.0.0.1:{https_port}/missing")
        failed = client.get(f"https://127.0.0.1:{https_port}/raises")
    assert ok.status_code == 200
    assert ok.json() == {"ok": True}
    assert (missing.status_code, failed.status_code) == (404, 500)
    for response in (ok, missing, failed):
        assert response.headers["strict-transport-security"] == (
            "max-age=31536000; includeSubDomains"
        )
        csp = response.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "server" not in response.headers


# --- the context and its refusals --------------------------------------------------------------


def test_the_context_pins_the_protocol_floor_and_options(pki: Pki) -> None:
    context = build_ssl_context(tls_settings(pki).server)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.options & ssl.OP_NO_COMPRESSION
    assert context.options & ssl.OP_NO_RENEGOTIATION
    tls12 = [c for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert {c["name"] for c in tls12} == set(TLS12_CIPHERS.split(":"))
    assert all(c["aead"] and c["kea"] == "kx-ecdhe" for c in tls12)


@pytest.mark.parametrize("mode", [0o640, 0o644, 0o604, 0o660, 0o666])
def test_a_key_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    pki = self_signed(tmp_path)
    pki.key.chmod(mode)
    with pytest.raises(TlsConfigError, match=rf"has mode {mode:04o}.*chmod 600"):
        build_ssl_context(tls_settings(pki).server)


def test_a_key_readable_by_its_owner_only_is_accepted(tmp_path: Path) -> None:
    pki = self_signed(tmp_path)
    pki.key.chmod(0o400)
    build_ssl_context(tls_settings(pki).server)


def test_a_missing_certificate_is_named(tmp_path: Path, pki: Pki) -> None:
    settings = Settings.model_validate(
        {"server": {"tls_cert": f"file:{tmp_path / 'nope.crt'}", "tls_key": str(pki.key)}}
    )
    with pytest.raises(TlsConfigError, match=r"server\.tls_cert: file not found: .*nope\.crt"):
        build_ssl_context(settings.server)


def test_a_missing_key_is_named(tmp_path: Path, pki: Pki) -> None:
    settings = Settings.model_validate(
        {"server": {"tls_cert": str(pki.cert), "tls_key": str(tmp_path / "nope.key")}}
    )
    with pytest.raises(TlsConfigError, match=r"server\.tls_key: file not found: .*nope\.key"):
        build_ssl_context(settings.server)


def test_a_key_that_is_a_directory_is_refused(tmp_path: Path, pki: Pki) -> None:
    settings = Settings.model_validate(
        {"server": {"tls_cert": str(pki.cert), "tls_key": str(tmp_path)}}
    )
    with pytest.raises(TlsConfigError, match="not a regular file"):
        build_ssl_context(settings.server)


def test_an_encrypted_key_opens_with_its_password_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    password = "correct horse battery staple"  # a test fixture, not a credential
    pki = self_signed(tmp_path, password=password.encode())
    monkeypatch.setenv("OBSIGEN_TEST_TLS_KEY_PASSWORD", password)
    settings = tls_settings(pki, tls_key_password="env:OBSIGEN_TEST_TLS_KEY_PASSWORD")
    assert build_ssl_context(settings.server).minimum_version == ssl.TLSVersion.TLSv1_2


def test_an_encrypted_key_without_a_password_is_refused_without_prompting(
    tmp_path: Path,
) -> None:
    pki = self_signed(tmp_path, password=b"a test fixture")
    with pytest.raises(TlsConfigError, match=r"encrypted: set server\.tls_key_password"):
        build_ssl_context(tls_settings(pki).server)


def test_a_wrong_key_password_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pki = self_signed(tmp_path, password=b"a test fixture")
    monkeypatch.setenv("OBSIGEN_TEST_TLS_KEY_PASSWORD", "not it")
    settings = tls_settings(pki, tls_key_password="env:OBSIGEN_TEST_TLS_KEY_PASSWORD")
    with pytest.raises(TlsConfigError, match="cannot load the TLS certificate"):
        build_ssl_context(settings.server)


def test_an_unset_password_variable_is_named(tmp_path: Path, pki: Pki) -> None:
    settings = tls_settings(pki, tls_key_password="env:OBSIGEN_TEST_NOT_SET_ANYWHERE")
    with pytest.raises(TlsConfigError, match="OBSIGEN_TEST_NOT_SET_ANYWHERE is not set"):
        build_ssl_context(settings.server)


def test_a_key_that_does_not_match_the_certificate_is_refused(tmp_path: Path, pki: Pki) -> None:
    other = self_signed(tmp_path, name="other")
    settings = Settings.model_validate(
        {"server": {"tls_cert": str(pki.cert), "tls_key": str(other.key)}}
    )
    with pytest.raises(TlsConfigError, match="does not match"):
        build_ssl_context(settings.server)


def test_uvicorn_config_refuses_before_listening(tmp_path: Path) -> None:
    pki = self_signed(tmp_path)
    pki.key.chmod(0o644)
    settings = tls_settings(pki)
    with pytest.raises(TlsConfigError, match="chmod 600"):
        uvicorn_config(tiny_app(settings), settings)


def test_without_tls_uvicorn_serves_plain_http_without_its_own_proxy_handling() -> None:
    config = uvicorn_config(FastAPI(), Settings.model_validate({}))
    assert not config.is_ssl
    assert config.proxy_headers is False
    assert config.server_header is False


def test_serve_refuses_a_bad_key_before_building_anything(tmp_path: Path) -> None:
    pki = self_signed(tmp_path)
    pki.key.chmod(0o640)
    with pytest.raises(TlsConfigError, match="readable by its owner only"):
        serve(tls_settings(pki))
