"""A real SAML 2.0 IdP for the tests: pysaml2's ``Server`` signing with keys made at test time.

Nothing here is committed key material: every key pair is generated into ``tmp_path``. Also
holds the XML surgery the attack tests need (re-signing a modified response, the XSW
catalogue), so each test reads as "take a valid response, break it one way, expect 401".
"""

from __future__ import annotations

import base64
import hashlib
import warnings
import zlib
from copy import deepcopy
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import NameOID
from lxml import etree
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.authn_context import INTERNETPROTOCOLPASSWORD
from saml2.config import IdPConfig
from saml2.metadata import create_metadata_string
from saml2.saml import NAMEID_FORMAT_PERSISTENT, NameID

with warnings.catch_warnings():
    # pysaml2's IdP module touches cryptography's deprecated CFB mode at import; the SP side
    # (what we ship) does not import it.
    warnings.simplefilter("ignore", CryptographyDeprecationWarning)
    from saml2.server import Server
from saml2.sigver import pre_signature_part
from saml2.xmldsig import DIGEST_SHA1, DIGEST_SHA256, SIG_RSA_SHA1, SIG_RSA_SHA256
from tests.conftest import LoggedIn, Platform

from obsigen.authz.permissions import Role

IDP_ENTITY_ID = "https://idp.example.eu/saml/idp"
IDP_SSO_URL = "https://idp.example.eu/saml/sso"
MFA_CONTEXT = "https://refeds.org/profile/mfa"

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
DS = "http://www.w3.org/2000/09/xmldsig#"
NS = {"samlp": SAMLP, "saml": SAML, "ds": DS}


@dataclass(frozen=True)
class KeyPair:
    key_path: Path
    cert_path: Path
    cert_pem: str
    key_pem: str
    sha256: str


def make_key_pair(directory: Path, name: str) -> KeyPair:
    directory.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    key_path = directory / f"{name}.key"
    cert_path = directory / f"{name}.crt"
    key_path.write_text(key_pem)
    key_path.chmod(0o600)
    cert_path.write_text(cert_pem)
    der = cert.public_bytes(serialization.Encoding.DER)
    return KeyPair(key_path, cert_path, cert_pem, key_pem, hashlib.sha256(der).hexdigest())


class TestIdp:
    """One IdP signing with ``signer``; its metadata may list further certificates."""

    __test__ = False  # not a pytest class

    def __init__(
        self,
        signer: KeyPair,
        *,
        sha1: bool = False,
        extra_metadata_certs: tuple[KeyPair, ...] = (),
    ) -> None:
        self.signer = signer
        self.sign_alg = SIG_RSA_SHA1 if sha1 else SIG_RSA_SHA256
        self.digest_alg = DIGEST_SHA1 if sha1 else DIGEST_SHA256
        self.extra_metadata_certs = extra_metadata_certs
        self.server = Server(config=self._config(None))

    def _config(self, sp_metadata: str | None) -> IdPConfig:
        settings: dict[str, Any] = {
            "entityid": IDP_ENTITY_ID,
            "xmlsec_binary": "/usr/bin/xmlsec1",
            "key_file": str(self.signer.key_path),
            "cert_file": str(self.signer.cert_path),
            "service": {
                "idp": {
                    "endpoints": {"single_sign_on_service": [(IDP_SSO_URL, BINDING_HTTP_REDIRECT)]},
                    "signing_algorithm": self.sign_alg,
                    "digest_algorithm": self.digest_alg,
                    "name_id_format": [NAMEID_FORMAT_PERSISTENT],
                    "policy": {
                        "default": {"lifetime": {"minutes": 5}, "attribute_restrictions": None}
                    },
                }
            },
        }
        if sp_metadata is not None:
            settings["metadata"] = {"inline": [sp_metadata]}
        config = IdPConfig()
        config.load(settings)
        return config

    def metadata(self) -> str:
        text: str = create_metadata_string(None, config=self.server.config, sign=False).decode()
        if not self.extra_metadata_certs:
            return text
        root = etree.fromstring(text.encode())
        descriptor = root.find("{urn:oasis:names:tc:SAML:2.0:metadata}IDPSSODescriptor")
        first = descriptor.find("{urn:oasis:names:tc:SAML:2.0:metadata}KeyDescriptor")
        for extra in self.extra_metadata_certs:
            clone = deepcopy(first)
            node = clone.find(f".//{{{DS}}}X509Certificate")
            node.text = "".join(extra.cert_pem.strip().splitlines()[1:-1])
            descriptor.insert(descriptor.index(first), clone)
        return etree.tostring(root, encoding="unicode")

    def trust_sp(self, sp_metadata: str) -> None:
        self.server = Server(config=self._config(sp_metadata))

    def response(
        self,
        *,
        sp_entity_id: str,
        acs_url: str,
        in_response_to: str | None,
        name_id: str = "alice-0001",
        email: str = "alice@corp.example.eu",
        groups: tuple[str, ...] = ("engineering",),
        authn_context: str = INTERNETPROTOCOLPASSWORD,
        sign_response: bool = False,
        sign_assertion: bool = True,
        encrypt_cert: str | None = None,
        destination: str | None = None,
    ) -> str:
        """The XML of a response to ``in_response_to`` (None: IdP-initiated)."""
        identity = {"email": [email], "displayName": ["Alice Example"], "groups": list(groups)}
        kwargs: dict[str, Any] = {}
        if encrypt_cert is not None:
            kwargs = {"encrypt_assertion": True, "encrypt_cert_assertion": encrypt_cert}
        response = self.server.create_authn_response(
            identity,
            in_response_to,
            destination or acs_url,
            sp_entity_id,
            name_id=NameID(format=NAMEID_FORMAT_PERSISTENT, text=name_id),
            authn={"class_ref": authn_context, "authn_auth": IDP_ENTITY_ID},
            sign_response=sign_response,
            sign_assertion=sign_assertion,
            sign_alg=self.sign_alg,
            digest_alg=self.digest_alg,
            **kwargs,
        )
        return str(response)

    def resign_assertion(self, xml: str) -> str:
        """Sign the (possibly modified) assertion of ``xml`` afresh with the IdP key: the
        response is then validly signed, so only the check under test can refuse it."""
        root = etree.fromstring(xml.encode())
        assertion = root.find("saml:Assertion", NS)
        old = assertion.find("ds:Signature", NS)
        if old is not None:
            assertion.remove(old)
        template = pre_signature_part(
            assertion.get("ID"), sign_alg=self.sign_alg, digest_alg=self.digest_alg
        )
        signature = etree.fromstring(str(template).encode())
        issuer = assertion.find("saml:Issuer", NS)
        assertion.insert(assertion.index(issuer) + 1, signature)
        unsigned = etree.tostring(root, encoding="unicode")
        signed: str = self.server.sec.sign_statement(
            unsigned,
            node_name="urn:oasis:names:tc:SAML:2.0:assertion:Assertion",
            node_id=assertion.get("ID"),
        )
        return signed

    def redirect_request_id(self, location: str) -> str:
        """The ID of the AuthnRequest our SP sent in an HTTP-Redirect URL."""
        query = parse_qs(urlsplit(location).query)
        assert urlsplit(location)._replace(query="").geturl() == IDP_SSO_URL
        request = self.server.parse_authn_request(query["SAMLRequest"][0], BINDING_HTTP_REDIRECT)
        return str(request.message.id)


def encode(xml: str | bytes) -> str:
    data = xml.encode() if isinstance(xml, str) else xml
    return base64.b64encode(data).decode()


def inflate_redirect(location: str) -> str:
    query = parse_qs(urlsplit(location).query)
    return zlib.decompress(base64.b64decode(query["SAMLRequest"][0]), -15).decode()


def saml_idp_body(idp: TestIdp, pins: list[str], **config: Any) -> dict[str, Any]:
    """The POST /api/v1/idps body for ``idp``."""
    return {
        "slug": "corp-saml",
        "protocol": "saml",
        "display_name": "Corp SAML",
        "domains": ["corp.example.eu"],
        "jit_provisioning": True,
        "config": {"idp_metadata_xml": idp.metadata(), "pinned_certificates_sha256": pins} | config,
    }


@dataclass(frozen=True)
class SamlKeys:
    idp: KeyPair
    other: KeyPair
    sp: KeyPair


@pytest.fixture(scope="session")
def saml_keys(tmp_path_factory: pytest.TempPathFactory) -> SamlKeys:
    """Key pairs for the whole session: RSA generation is the slow part of these tests."""
    directory = tmp_path_factory.mktemp("saml-keys")
    return SamlKeys(
        idp=make_key_pair(directory, "idp"),
        other=make_key_pair(directory, "other"),
        sp=make_key_pair(directory, "sp"),
    )


@dataclass
class SamlSetup:
    """An IdP registered through the admin API, trusted both ways, with a group mapping."""

    platform: Platform
    idp: TestIdp
    idp_id: str
    admin: LoggedIn
    sp_entity_id: str
    acs_url: str
    sp_metadata: str

    async def start_login(self, relay_state: str | None = None) -> str:
        params = {"relay_state": relay_state} if relay_state else {}
        response = await self.platform.client.get(f"/auth/saml/{self.idp_id}/login", params=params)
        assert response.status_code == 302, response.text
        return self.idp.redirect_request_id(response.headers["location"])

    def response(self, in_response_to: str | None, **kwargs: Any) -> str:
        return self.idp.response(
            sp_entity_id=self.sp_entity_id,
            acs_url=self.acs_url,
            in_response_to=in_response_to,
            **kwargs,
        )

    async def post(self, xml: str | bytes, idp_id: str | None = None) -> httpx.Response:
        return await self.post_raw(encode(xml), idp_id)

    async def post_raw(self, value: str, idp_id: str | None = None) -> httpx.Response:
        return await self.platform.client.post(
            f"/auth/saml/{idp_id or self.idp_id}/acs", data={"SAMLResponse": value}
        )


async def register_idp(
    platform: Platform,
    idp: TestIdp,
    pins: list[str],
    *,
    tenant: str | None = None,
    group_role: tuple[str, Role] | None = ("engineering", Role.MEMBER),
    **config: Any,
) -> SamlSetup:
    admin = await platform.login(tenant, Role.ADMIN)
    headers = platform.auth(admin.token)
    created = await platform.client.post(
        "/api/v1/idps", json=saml_idp_body(idp, pins, **config), headers=headers
    )
    assert created.status_code == 201, created.text
    idp_id = created.json()["id"]
    if group_role is not None:
        mapped = await platform.client.post(
            "/api/v1/group-mappings",
            json={"source": f"idp:{idp_id}", "group": group_role[0], "role": group_role[1].value},
            headers=headers,
        )
        assert mapped.status_code == 201, mapped.text
    metadata = await platform.client.get(f"/auth/saml/{idp_id}/metadata")
    assert metadata.status_code == 200, metadata.text
    idp.trust_sp(metadata.text)
    base = f"{platform.settings.federation.public_url}/auth/saml/{idp_id}"
    return SamlSetup(platform, idp, idp_id, admin, f"{base}/metadata", f"{base}/acs", metadata.text)


__all__ = [
    "BINDING_HTTP_POST",
    "IDP_ENTITY_ID",
    "MFA_CONTEXT",
    "NS",
    "KeyPair",
    "SamlKeys",
    "SamlSetup",
    "TestIdp",
    "encode",
    "make_key_pair",
    "register_idp",
    "saml_idp_body",
    "saml_keys",
]
