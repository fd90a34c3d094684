"""An IdP's metadata document, read with the hardened parser and checked against the pins.

Used when an admin stores the IdP (config-time validation) and each time our SP is built: only
the pinned signing certificates are kept, so a metadata swap alone cannot add a signer.
"""

from __future__ import annotations

from base64 import b64decode
from binascii import Error as Base64Error
from dataclasses import dataclass

from lxml import etree  # type: ignore[import-untyped]

from obsigen.federation.saml_xml import DS, MD, SamlRefused, parse_strict, sha256_hex

BINDING_HTTP_REDIRECT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
_KEY_DESCRIPTOR = f"{{{MD}}}KeyDescriptor"


@dataclass(frozen=True, slots=True)
class IdpMetadata:
    entity_id: str
    sso_redirect_url: str
    # SHA-256 (hex) of each signing certificate the metadata lists.
    signing_certificates: tuple[str, ...]
    # The metadata with only the pinned signing certificates left in it.
    pinned_xml: str


def _signing_descriptors(descriptor: etree._Element) -> list[etree._Element]:
    return [kd for kd in descriptor.findall(_KEY_DESCRIPTOR) if kd.get("use") in (None, "signing")]


def _der_of(key_descriptor: etree._Element) -> bytes:
    node = key_descriptor.find(f".//{{{DS}}}X509Certificate")
    if node is None or not (node.text or "").strip():
        raise ValueError("a KeyDescriptor without an X509Certificate")
    try:
        return b64decode("".join((node.text or "").split()), validate=True)
    except (Base64Error, ValueError):
        raise ValueError("a malformed X509Certificate") from None


def read_idp_metadata(xml: str, pins: list[str]) -> IdpMetadata:
    """Validates an IdP metadata document against the pins; ValueError says what is wrong."""
    try:
        root = parse_strict(xml.encode("utf-8"))
    except SamlRefused as exc:
        raise ValueError(f"idp_metadata_xml: {exc.detail}") from None
    if root.tag != f"{{{MD}}}EntityDescriptor":
        raise ValueError("idp_metadata_xml: one md:EntityDescriptor (not an aggregate)")
    entity_id = root.get("entityID") or ""
    descriptors = root.findall(f"{{{MD}}}IDPSSODescriptor")
    if not entity_id or len(descriptors) != 1:
        raise ValueError("idp_metadata_xml: an entityID and one IDPSSODescriptor")
    descriptor = descriptors[0]
    redirect = [
        sso.get("Location", "")
        for sso in descriptor.findall(f"{{{MD}}}SingleSignOnService")
        if sso.get("Binding") == BINDING_HTTP_REDIRECT
    ]
    if not redirect or not redirect[0].startswith(("https://", "http://")):
        raise ValueError("idp_metadata_xml: no HTTP-Redirect SingleSignOnService")
    pinned = set(pins)
    certificates = []
    for key_descriptor in _signing_descriptors(descriptor):
        try:
            fingerprint = sha256_hex(_der_of(key_descriptor))
        except ValueError:
            raise ValueError("idp_metadata_xml: a malformed signing certificate") from None
        certificates.append(fingerprint)
        if fingerprint not in pinned:
            descriptor.remove(key_descriptor)
    if not pinned.intersection(certificates):
        raise ValueError(
            "idp_metadata_xml: none of its signing certificates matches pinned_certificates_sha256"
        )
    return IdpMetadata(
        entity_id=entity_id,
        sso_redirect_url=redirect[0],
        signing_certificates=tuple(certificates),
        pinned_xml=etree.tostring(root, encoding="unicode"),
    )
