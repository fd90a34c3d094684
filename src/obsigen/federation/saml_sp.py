"""Our SAML service provider for one IdP row, built with pysaml2: its configuration, its
metadata, AuthnRequests (HTTP-Redirect) and the cryptographic check of responses (HTTP-POST).

pysaml2 is synchronous and shells out to xmlsec1; callers run these functions in a worker
thread. It is handed IdP metadata that carries only pinned certificates, so a signature it
accepts was made by a pinned key whatever the imported metadata said.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from copy import deepcopy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT  # type: ignore[import-untyped]
from saml2.client import Saml2Client  # type: ignore[import-untyped]
from saml2.config import SPConfig  # type: ignore[import-untyped]
from saml2.metadata import create_metadata_string  # type: ignore[import-untyped]
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256  # type: ignore[import-untyped]

from obsigen.federation.saml_config import SamlConfig
from obsigen.federation.saml_metadata import IdpMetadata, read_idp_metadata
from obsigen.federation.saml_xml import SamlRefused
from obsigen.secretref import resolve_secret

XMLSEC_BINARY = "/usr/bin/xmlsec1"


@dataclass(frozen=True, slots=True)
class SpEndpoints:
    entity_id: str
    acs_url: str


def sp_endpoints(public_url: str, idp_id: str) -> SpEndpoints:
    base = f"{public_url.rstrip('/')}/auth/saml/{idp_id}"
    return SpEndpoints(entity_id=f"{base}/metadata", acs_url=f"{base}/acs")


@contextlib.contextmanager
def _sp_key_files(config: SamlConfig) -> Iterator[tuple[str, str] | None]:
    """pysaml2 and xmlsec1 read keys from files: the SP key lives in a private temporary
    directory for the duration of one call, then is removed."""
    if not config.sp_private_key or not config.sp_certificate:
        yield None
        return
    key_pem = resolve_secret(config.sp_private_key)
    with tempfile.TemporaryDirectory(prefix="obsigen-saml-") as directory:
        key_path = Path(directory, "sp.key")
        cert_path = Path(directory, "sp.crt")
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(key_pem)
        cert_path.write_text(config.sp_certificate)
        yield str(key_path), str(cert_path)


def _client_config(
    config: SamlConfig,
    metadata: IdpMetadata,
    endpoints: SpEndpoints,
    clock_skew_s: int,
    keys: tuple[str, str] | None,
) -> dict[str, Any]:
    sp: dict[str, Any] = {
        "endpoints": {"assertion_consumer_service": [(endpoints.acs_url, BINDING_HTTP_POST)]},
        "allow_unsolicited": config.allow_idp_initiated,
        "authn_requests_signed": keys is not None,
        # We require one of the two signatures ourselves (saml_xml.covered_assertion); this
        # tells pysaml2 the same.
        "want_response_signed": False,
        "want_assertions_signed": False,
        "want_assertions_or_response_signed": True,
        # pysaml2 defaults to SHA-1 and only reads these inside the "sp" block.
        "signing_algorithm": SIG_RSA_SHA256,
        "digest_algorithm": DIGEST_SHA256,
    }
    result: dict[str, Any] = {
        "entityid": endpoints.entity_id,
        "xmlsec_binary": XMLSEC_BINARY,
        "metadata": {"inline": [metadata.pinned_xml]},
        "service": {"sp": sp},
        "accepted_time_diff": clock_skew_s,
        "allow_unknown_attributes": True,
        # Certificates embedded in a message are never used to verify it.
        "only_use_keys_in_metadata": True,
    }
    if keys is not None:
        key_file, cert_file = keys
        result["key_file"] = key_file
        result["cert_file"] = cert_file
        result["encryption_keypairs"] = [{"key_file": key_file, "cert_file": cert_file}]
    return result


@contextlib.contextmanager
def service_provider(
    config: SamlConfig, endpoints: SpEndpoints, clock_skew_s: int
) -> Iterator[tuple[Saml2Client, IdpMetadata]]:
    metadata = read_idp_metadata(config.idp_metadata_xml, config.pinned_certificates_sha256)
    with _sp_key_files(config) as keys:
        sp_config = SPConfig()
        sp_config.load(deepcopy(_client_config(config, metadata, endpoints, clock_skew_s, keys)))
        yield Saml2Client(config=sp_config), metadata


def sp_metadata(config: SamlConfig, endpoints: SpEndpoints, clock_skew_s: int) -> str:
    # The public half only: the metadata never needs the SP key, so it is not resolved here.
    public = config.model_copy(update={"sp_private_key": ""})
    metadata = read_idp_metadata(config.idp_metadata_xml, config.pinned_certificates_sha256)
    sp_config = SPConfig()
    settings = _client_config(public, metadata, endpoints, clock_skew_s, None)
    settings["service"]["sp"]["authn_requests_signed"] = bool(config.sp_private_key)
    settings["service"]["sp"]["want_assertions_signed"] = True
    if config.sp_certificate:
        with tempfile.TemporaryDirectory(prefix="obsigen-saml-") as directory:
            cert_path = Path(directory, "sp.crt")
            cert_path.write_text(config.sp_certificate)
            settings["cert_file"] = str(cert_path)
            settings["encryption_keypairs"] = [{"cert_file": str(cert_path)}]
            sp_config.load(settings)
            text: str = create_metadata_string(None, config=sp_config, sign=False).decode()
            return text
    sp_config.load(settings)
    return str(create_metadata_string(None, config=sp_config, sign=False).decode())


@dataclass(frozen=True, slots=True)
class AuthnRequest:
    request_id: str
    location: str


def authn_request(
    config: SamlConfig, endpoints: SpEndpoints, clock_skew_s: int, relay_state: str
) -> AuthnRequest:
    with service_provider(config, endpoints, clock_skew_s) as (client, metadata):
        request_id, info = client.prepare_for_authenticate(
            entityid=metadata.entity_id,
            relay_state=relay_state,
            binding=BINDING_HTTP_REDIRECT,
            sign=client.authn_requests_signed,
            sigalg=SIG_RSA_SHA256,
            digest_alg=DIGEST_SHA256,
        )
    headers = dict(info["headers"])
    return AuthnRequest(request_id=str(request_id), location=str(headers["Location"]))


@dataclass(frozen=True, slots=True)
class VerifiedResponse:
    """The document pysaml2 verified (decrypted where the assertion was encrypted)."""

    xml: bytes
    idp_entity_id: str


def verify_response(
    config: SamlConfig,
    endpoints: SpEndpoints,
    clock_skew_s: int,
    encoded: str,
    outstanding: dict[str, str],
) -> VerifiedResponse:
    """Signature, decryption and pysaml2's own checks; raises SamlRefused on any failure."""
    with service_provider(config, endpoints, clock_skew_s) as (client, metadata):
        try:
            response = client.parse_authn_request_response(
                encoded, BINDING_HTTP_POST, outstanding=outstanding
            )
        except Exception as exc:  # noqa: BLE001 - pysaml2 raises anything; all of it is a "no"
            raise SamlRefused(
                f"the SAML response failed verification ({type(exc).__name__})"
            ) from None
        if response is None:
            raise SamlRefused("the SAML response failed verification")
        xml = response.xmlstr
    return VerifiedResponse(
        xml=xml.encode("utf-8") if isinstance(xml, str) else bytes(xml),
        idp_entity_id=metadata.entity_id,
    )
