"""Hardened reading of SAML documents, before and after pysaml2 sees them.

pysaml2 verifies signatures and decrypts; this module makes sure the document it verified has
one shape only, so that what we read afterwards is what the signature covered:

- no DOCTYPE, entities, comments or processing instructions (XXE, billion laughs, and the
  comment trick that makes a parser see ``user@evil.com`` in ``user@evil.com<!---->.x.eu``);
- bounded size;
- exactly one assertion (plain or encrypted), a direct child of the Response;
- every ``ID`` unique, every signature enveloped in the Response or the Assertion, with one
  Reference whose URI names its parent, and allowed algorithms only (no SHA-1, no XPath
  transforms, no ``ds:Object`` where a wrapped copy could hide).

The XML Signature Wrapping attacks (XSW1-8) all need a second Response or Assertion, a
signature somewhere else, or a duplicated ID: each shape is refused here.
"""

from __future__ import annotations

import hashlib
import re
from base64 import b64decode
from binascii import Error as Base64Error
from dataclasses import dataclass

from lxml import etree  # type: ignore[import-untyped]

from obsigen.errors import Unauthenticated

MAX_DOCUMENT_BYTES = 256 * 1024

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
DS = "http://www.w3.org/2000/09/xmldsig#"
XENC = "http://www.w3.org/2001/04/xmlenc#"
MD = "urn:oasis:names:tc:SAML:2.0:metadata"

RESPONSE = f"{{{SAMLP}}}Response"
ASSERTION = f"{{{SAML}}}Assertion"
ENCRYPTED_ASSERTION = f"{{{SAML}}}EncryptedAssertion"
SIGNATURE = f"{{{DS}}}Signature"

# RSA and ECDSA over SHA-2 only: SHA-1 collisions are practical, so a SHA-1 signature or digest
# proves nothing about the content.
SIGNATURE_METHODS = frozenset(
    {
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384",
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384",
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512",
    }
)
DIGEST_METHODS = frozenset(
    {
        "http://www.w3.org/2001/04/xmlenc#sha256",
        "http://www.w3.org/2001/04/xmldsig-more#sha384",
        "http://www.w3.org/2001/04/xmlenc#sha512",
    }
)
# Canonicalisations without comments, and the enveloped-signature transform (SAML core 5.4.4);
# anything else (XPath, XSLT) can make the signature cover something other than what we read.
CANONICALISATIONS = frozenset(
    {
        "http://www.w3.org/2001/10/xml-exc-c14n#",
        "http://www.w3.org/TR/2001/REC-xml-c14n-20010315",
    }
)
TRANSFORMS = CANONICALISATIONS | {"http://www.w3.org/2000/09/xmldsig#enveloped-signature"}

_ID_ATTRIBUTES = ("ID", "Id", "id")
_DECLARED_ENCODING = re.compile(rb"^\s*<\?xml[^>]*encoding\s*=\s*[\"']([A-Za-z0-9._-]+)")


class SamlRefused(Unauthenticated):
    """A SAML message we do not accept. The detail names the check, never the content."""

    type_slug = "saml-refused"
    title = "SAML sign-in refused"


def decode_post_binding(value: str) -> bytes:
    """The XML of an HTTP-POST binding ``SAMLResponse`` field (base64, bounded)."""
    # base64 grows by 4/3; the bound on the encoded form keeps the decoder's work bounded too.
    if len(value) > (MAX_DOCUMENT_BYTES * 4) // 3 + 8:
        raise SamlRefused("the SAML response is too large")
    try:
        data = b64decode("".join(value.split()), validate=True)
    except (Base64Error, ValueError):
        raise SamlRefused("SAMLResponse is not base64") from None
    if not data:
        raise SamlRefused("SAMLResponse is empty")
    return data


def parse_strict(data: bytes) -> etree._Element:
    """Parse ``data`` refusing everything a SAML message never needs."""
    if len(data) > MAX_DOCUMENT_BYTES:
        raise SamlRefused("the SAML document is too large")
    lowered = data.lower()
    if b"<!doctype" in lowered or b"<!entity" in lowered:
        raise SamlRefused("the SAML document declares a DTD or entities")
    declared = _DECLARED_ENCODING.match(data)
    if declared and declared.group(1).lower() not in (b"utf-8", b"utf8"):
        # Another encoding would hide a DOCTYPE from the byte check above.
        raise SamlRefused("the SAML document is not UTF-8")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        raise SamlRefused("the SAML document is not UTF-8") from None
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        huge_tree=False,
        load_dtd=False,
        dtd_validation=False,
        remove_comments=False,
        remove_pis=False,
    )
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError:
        raise SamlRefused("the SAML document is not well-formed XML") from None
    if root.getroottree().docinfo.doctype:
        raise SamlRefused("the SAML document declares a DTD or entities")
    outside = list(root.itersiblings(preceding=True)) + list(root.itersiblings())
    if outside or any(not isinstance(node.tag, str) for node in root.iter()):
        raise SamlRefused("comments, processing instructions or entities in the SAML document")
    return root


def _local_id(element: etree._Element) -> str | None:
    for name in _ID_ATTRIBUTES:
        value = element.get(name)
        if value is not None:
            return str(value)
    return None


def _check_unique_ids(root: etree._Element) -> None:
    seen: set[str] = set()
    for element in root.iter():
        for name in _ID_ATTRIBUTES:
            value = element.get(name)
            if value is None:
                continue
            if value in seen:
                raise SamlRefused("duplicate ID in the SAML document")
            seen.add(value)


def _one(parent: etree._Element, tag: str, what: str) -> etree._Element:
    found = parent.findall(tag)
    if len(found) != 1:
        raise SamlRefused(f"signature: expected one {what}")
    element: etree._Element = found[0]
    return element


def _check_signature(signature: etree._Element) -> None:
    """One enveloped signature: SAML core 5.4 plus our algorithm allow-lists."""
    parent = signature.getparent()
    if parent is None or parent.tag not in (RESPONSE, ASSERTION):
        raise SamlRefused("a signature outside the Response and the Assertion")
    parent_id = parent.get("ID")
    if not parent_id:
        raise SamlRefused("a signed element without an ID")
    signed_info = _one(signature, f"{{{DS}}}SignedInfo", "SignedInfo")
    c14n = _one(signed_info, f"{{{DS}}}CanonicalizationMethod", "CanonicalizationMethod")
    if c14n.get("Algorithm") not in CANONICALISATIONS:
        raise SamlRefused("signature: canonicalisation method not allowed")
    method = _one(signed_info, f"{{{DS}}}SignatureMethod", "SignatureMethod")
    if method.get("Algorithm") not in SIGNATURE_METHODS:
        raise SamlRefused("signature: algorithm not allowed (RSA/ECDSA with SHA-256 or stronger)")
    reference = _one(signed_info, f"{{{DS}}}Reference", "Reference")
    if reference.get("URI") != f"#{parent_id}":
        raise SamlRefused("signature: the reference does not name the signed element")
    digest = _one(reference, f"{{{DS}}}DigestMethod", "DigestMethod")
    if digest.get("Algorithm") not in DIGEST_METHODS:
        raise SamlRefused("signature: digest not allowed (SHA-256 or stronger)")
    for transform in reference.iter(f"{{{DS}}}Transform"):
        if transform.get("Algorithm") not in TRANSFORMS or len(transform):
            raise SamlRefused("signature: transform not allowed")


def check_response_shape(root: etree._Element) -> etree._Element:
    """The single assertion (plain or encrypted) of a well-shaped Response."""
    if root.tag != RESPONSE:
        raise SamlRefused("not a SAML Response")
    _check_unique_ids(root)
    if next(root.iter(f"{{{DS}}}Object"), None) is not None:
        raise SamlRefused("ds:Object in the SAML document")
    assertions = list(root.iter(ASSERTION, ENCRYPTED_ASSERTION))
    if len(assertions) != 1:
        raise SamlRefused("the SAML response must carry exactly one assertion")
    assertion: etree._Element = assertions[0]
    if assertion.getparent() is not root:
        raise SamlRefused("the assertion is not a direct child of the Response")
    if len(root.findall(SIGNATURE)) > 1 or len(assertion.findall(SIGNATURE)) > 1:
        raise SamlRefused("more than one signature on an element")
    for signature in root.iter(SIGNATURE):
        _check_signature(signature)
    return assertion


def signature_certificates(root: etree._Element) -> list[bytes]:
    """DER certificates the document's signatures carry in KeyInfo."""
    found = []
    # Only the signatures' KeyInfo: an EncryptedKey's KeyInfo names our own certificate.
    nodes = [
        node
        for signature in root.iter(SIGNATURE)
        for node in signature.iter(f"{{{DS}}}X509Certificate")
    ]
    for node in nodes:
        try:
            found.append(b64decode("".join((node.text or "").split()), validate=True))
        except (Base64Error, ValueError):
            raise SamlRefused("a malformed certificate in a signature") from None
    return found


def sha256_hex(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


@dataclass(frozen=True, slots=True)
class SignedAssertion:
    """The assertion of a verified document, and what its signature covers."""

    element: etree._Element
    assertion_signed: bool
    response_signed: bool


def covered_assertion(root: etree._Element) -> SignedAssertion:
    """The plain assertion of a (verified, decrypted) Response, with the signatures that cover
    it. pysaml2 has checked the cryptography; here we make sure a signature exists and that its
    Reference points at the very element we are about to read (no wrapping)."""
    _unwrap_decrypted(root)
    element = check_response_shape(root)
    if element.tag != ASSERTION:
        raise SamlRefused("the assertion could not be decrypted")
    assertion_signed = _signs(element)
    response_signed = _signs(root)
    if not (assertion_signed or response_signed):
        raise SamlRefused("neither the assertion nor the response is signed")
    return SignedAssertion(element, assertion_signed, response_signed)


def _unwrap_decrypted(root: etree._Element) -> None:
    """pysaml2 leaves a decrypted assertion inside its EncryptedAssertion element; put it in
    its place so that the one-assertion shape applies to decrypted responses too."""
    for wrapper in root.findall(ENCRYPTED_ASSERTION):
        children = list(wrapper)
        if len(children) == 1 and children[0].tag == ASSERTION:
            root.replace(wrapper, children[0])


def _signs(element: etree._Element) -> bool:
    signature = element.find(SIGNATURE)
    if signature is None:
        return False
    reference = signature.find(f"{{{DS}}}SignedInfo/{{{DS}}}Reference")
    element_id = _local_id(element)
    return (
        reference is not None
        and element_id is not None
        and (reference.get("URI") == f"#{element_id}")
    )
