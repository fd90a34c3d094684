"""Attacks on the SAML assertion consumer service, each refused with 401 ``saml-refused``.

Every forged response starts from a valid one the test IdP signed (tests/integration/
federation/test_saml_signin.py shows those are accepted), and is broken one way: unsigned,
wrapped (XSW1-8), comment-injected, expired, for another audience or recipient, replayed,
entity-laden, SHA-1, unsolicited with an unknown request id, or signed by an unpinned key.
"""

from __future__ import annotations

from collections.abc import Callable
from copy import deepcopy
from datetime import UTC, datetime, timedelta

import pytest
from lxml import etree
from sqlalchemy import select
from tests.conftest import Platform
from tests.integration.federation.saml_idp import (
    NS,
    SamlKeys,
    SamlSetup,
    TestIdp,
    encode,
    register_idp,
    saml_keys,
)

from obsigen.db.models import AuditEventRecord
from obsigen.federation.idps import enabled_idp
from obsigen.federation.saml import SamlRefused, SamlSp
from obsigen.federation.saml_xml import check_response_shape, parse_strict

pytestmark = pytest.mark.asyncio
__all__ = ["saml_keys"]

SAMLP_EXTENSIONS = "{urn:oasis:names:tc:SAML:2.0:protocol}Extensions"
DS_OBJECT = "{http://www.w3.org/2000/09/xmldsig#}Object"
EVIL_NAME = "admin-0000"


@pytest.fixture
async def saml(platform: Platform, saml_keys: SamlKeys) -> SamlSetup:
    return await register_idp(platform, TestIdp(saml_keys.idp), [saml_keys.idp.sha256])


def assert_refused(response: object, fragment: str = "") -> None:
    import httpx

    assert isinstance(response, httpx.Response)
    assert response.status_code == 401, response.text
    problem = response.json()
    assert problem["type"].endswith("/saml-refused"), problem
    assert response.headers["content-type"].startswith("application/problem+json")
    assert fragment in problem["detail"], problem


def tree(xml: str) -> etree._Element:
    return etree.fromstring(xml.encode())


def text(root: etree._Element) -> str:
    return etree.tostring(root, encoding="unicode")


def make_evil(assertion: etree._Element) -> None:
    assertion.find("saml:Subject/saml:NameID", NS).text = EVIL_NAME


def unsigned_copy(element: etree._Element) -> etree._Element:
    clone = deepcopy(element)
    signature = clone.find("ds:Signature", NS)
    if signature is not None:
        clone.remove(signature)
    return clone


# --- the XSW catalogue (Somorovsky et al. 2012; the shapes SAML Raider generates) -------------


def xsw1(root: etree._Element) -> None:
    """Response signature: the signed original moves into the Signature; a new evil Response
    (new ID) surrounds it."""
    signature = root.find("ds:Signature", NS)
    signature.append(unsigned_copy(root))
    root.set("ID", "_evil_response")
    make_evil(root.find("saml:Assertion", NS))


def xsw2(root: etree._Element) -> None:
    """As XSW1, the signed original detached before the signature."""
    signature = root.find("ds:Signature", NS)
    root.insert(root.index(signature), unsigned_copy(root))
    root.set("ID", "_evil_response")
    make_evil(root.find("saml:Assertion", NS))


def xsw3(root: etree._Element) -> None:
    """An unsigned evil assertion placed before the signed one."""
    assertion = root.find("saml:Assertion", NS)
    evil = unsigned_copy(assertion)
    evil.set("ID", "_evil_assertion")
    make_evil(evil)
    root.insert(root.index(assertion), evil)


def xsw4(root: etree._Element) -> None:
    """The signed assertion moved inside an unsigned evil one."""
    assertion = root.find("saml:Assertion", NS)
    evil = unsigned_copy(assertion)
    evil.set("ID", "_evil_assertion")
    make_evil(evil)
    root.remove(assertion)
    evil.append(assertion)
    root.append(evil)


def xsw5(root: etree._Element) -> None:
    """The signed assertion becomes the evil one (new ID, signature kept); an unsigned copy of
    the original, which the signature now references, is appended."""
    assertion = root.find("saml:Assertion", NS)
    original = unsigned_copy(assertion)
    assertion.set("ID", "_evil_assertion")
    make_evil(assertion)
    root.append(original)


def xsw6(root: etree._Element) -> None:
    """As XSW5, with the referenced copy hidden inside the Signature."""
    assertion = root.find("saml:Assertion", NS)
    original = unsigned_copy(assertion)
    assertion.set("ID", "_evil_assertion")
    make_evil(assertion)
    assertion.find("ds:Signature", NS).append(original)


def xsw7(root: etree._Element) -> None:
    """An unsigned evil assertion inside a samlp:Extensions element before the signed one."""
    assertion = root.find("saml:Assertion", NS)
    evil = unsigned_copy(assertion)
    make_evil(evil)
    evil.set("ID", "_evil_assertion")
    extensions = etree.Element(SAMLP_EXTENSIONS)
    extensions.append(evil)
    root.insert(root.index(assertion), extensions)


def xsw8(root: etree._Element) -> None:
    """As XSW6, with the referenced copy inside a ds:Object of the Signature."""
    assertion = root.find("saml:Assertion", NS)
    original = unsigned_copy(assertion)
    assertion.set("ID", "_evil_assertion")
    make_evil(assertion)
    holder = etree.SubElement(assertion.find("ds:Signature", NS), DS_OBJECT)
    holder.append(original)


XSW: dict[str, tuple[Callable[[etree._Element], None], bool]] = {
    # name: (mutation, whether it attacks a signed Response rather than a signed Assertion)
    "XSW1": (xsw1, True),
    "XSW2": (xsw2, True),
    "XSW3": (xsw3, False),
    "XSW4": (xsw4, False),
    "XSW5": (xsw5, False),
    "XSW6": (xsw6, False),
    "XSW7": (xsw7, False),
    "XSW8": (xsw8, False),
}


@pytest.mark.parametrize("name", sorted(XSW))
async def test_signature_wrapping_is_refused(saml: SamlSetup, name: str) -> None:
    mutate, response_signed = XSW[name]
    request_id = await saml.start_login()
    valid = saml.response(
        request_id, sign_response=response_signed, sign_assertion=not response_signed
    )
    root = tree(valid)
    mutate(root)
    wrapped = text(root)
    assert EVIL_NAME in wrapped
    # The structural check alone refuses the shape, whatever pysaml2 would make of it.
    with pytest.raises(SamlRefused):
        check_response_shape(parse_strict(wrapped.encode()))
    assert_refused(await saml.post(wrapped))
    # The untouched response still signs the user in: the refusal was the wrapping.
    assert (await saml.post(valid)).status_code == 200


async def test_unsigned_assertion_is_refused(saml: SamlSetup) -> None:
    request_id = await saml.start_login()
    unsigned = saml.response(request_id, sign_assertion=False, sign_response=False)
    assert "Signature" not in unsigned
    assert_refused(await saml.post(unsigned), "signed")


async def test_comment_in_name_id_is_refused(saml: SamlSetup) -> None:
    """The IdP signed ``victim@corp.example.eu.evil.example`` (the attacker's own account);
    a comment splits the text so that a naive reader sees the victim's address. Canonical XML
    drops comments, so the signature still verifies: the comment itself must be refused."""
    request_id = await saml.start_login()
    own = "victim@corp.example.eu.evil.example"
    xml = saml.response(request_id, name_id=own, email=own)
    injected = xml.replace(f">{own}</", ">victim@corp.example.eu<!---->.evil.example</", 1)
    assert injected != xml
    assert_refused(await saml.post(injected), "comments")


async def test_expired_assertion_is_refused(platform: Platform, saml: SamlSetup) -> None:
    request_id = await saml.start_login()
    root = tree(saml.response(request_id))
    past = (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for element in root.iter():
        if element.get("NotOnOrAfter") is not None:
            element.set("NotOnOrAfter", past)
        if element.get("NotBefore") is not None:
            element.set("NotBefore", "2000-01-01T00:00:00Z")
    expired = saml.idp.resign_assertion(text(root))
    assert_refused(await saml.post(expired))

    # Our own clock check, without pysaml2's: a fresh response read an hour later.
    request_id = await saml.start_login()
    fresh = saml.response(request_id)
    async with platform.services.sessions() as session:
        idp = await enabled_idp(session, saml.idp_id, "saml")
    sp = SamlSp(idp, platform.settings.federation, platform.services.auth.ephemeral)
    with pytest.raises(SamlRefused, match="expired"):
        await sp.consume(encode(fresh), now=datetime.now(UTC) + timedelta(hours=1))


async def test_wrong_audience_is_refused(saml: SamlSetup) -> None:
    request_id = await saml.start_login()
    root = tree(saml.response(request_id))
    for audience in root.iter("{urn:oasis:names:tc:SAML:2.0:assertion}Audience"):
        audience.text = "https://other-sp.example.eu/metadata"
    assert_refused(await saml.post(saml.idp.resign_assertion(text(root))))


async def test_wrong_recipient_is_refused(saml: SamlSetup) -> None:
    request_id = await saml.start_login()
    root = tree(saml.response(request_id))
    for data in root.iter("{urn:oasis:names:tc:SAML:2.0:assertion}SubjectConfirmationData"):
        data.set("Recipient", "https://other-sp.example.eu/acs")
    assert_refused(await saml.post(saml.idp.resign_assertion(text(root))))


async def test_wrong_destination_is_refused(saml: SamlSetup) -> None:
    request_id = await saml.start_login()
    xml = saml.response(request_id, destination="https://other-sp.example.eu/acs")
    assert_refused(await saml.post(xml))


async def test_response_for_another_idp_is_refused(
    platform: Platform, saml: SamlSetup, saml_keys: SamlKeys
) -> None:
    """A valid response to our request posted to another tenant's SP for the same IdP."""
    other = await register_idp(platform, TestIdp(saml_keys.idp), [saml_keys.idp.sha256])
    request_id = await saml.start_login()
    assert_refused(await saml.post(saml.response(request_id), idp_id=other.idp_id))


async def test_replayed_response_is_refused(saml: SamlSetup) -> None:
    request_id = await saml.start_login()
    xml = saml.response(request_id)
    assert (await saml.post(xml)).status_code == 200
    assert_refused(await saml.post(xml))


async def test_replayed_unsolicited_assertion_is_refused(
    platform: Platform, saml_keys: SamlKeys
) -> None:
    """Without a request id to spend, the assertion-ID cache alone stops the replay."""
    setup = await register_idp(
        platform, TestIdp(saml_keys.idp), [saml_keys.idp.sha256], allow_idp_initiated=True
    )
    xml = setup.response(None)
    assert (await setup.post(xml)).status_code == 200
    assert_refused(await setup.post(xml), "already used")


BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE r [<!ENTITY a "aaaaaaaaaa">'
    '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">'
    '<!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;"><!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;">]>\n'
)
XXE = '<?xml version="1.0"?>\n<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'


@pytest.mark.parametrize("prolog", [BILLION_LAUGHS, XXE], ids=["billion-laughs", "xxe"])
async def test_entities_in_the_response_are_refused(saml: SamlSetup, prolog: str) -> None:
    request_id = await saml.start_login()
    xml = saml.response(request_id)
    body = xml.split("?>", 1)[1] if xml.startswith("<?xml") else xml
    # The entity is used inside the NameID, where it would end up in the identity.
    body = body.replace("alice-0001", "alice-0001&e;&x;" if "SYSTEM" in prolog else "&e;", 1)
    assert_refused(await saml.post(prolog + body), "DTD")


async def test_sha1_signed_response_is_refused(platform: Platform, saml_keys: SamlKeys) -> None:
    setup = await register_idp(platform, TestIdp(saml_keys.idp, sha1=True), [saml_keys.idp.sha256])
    request_id = await setup.start_login()
    xml = setup.response(request_id)
    assert "rsa-sha1" in xml
    assert "xmldsig#sha1" in xml
    assert_refused(await setup.post(xml), "not allowed")


async def test_unknown_in_response_to_is_refused(saml: SamlSetup) -> None:
    await saml.start_login()
    assert_refused(await saml.post(saml.response("id-never-sent-by-us")), "InResponseTo")


async def test_signer_not_pinned_is_refused(platform: Platform, saml_keys: SamlKeys) -> None:
    """The IdP's metadata lists two certificates; only one is pinned, and the IdP signs with
    the other: the metadata alone does not make a signer trusted."""
    idp = TestIdp(saml_keys.other, extra_metadata_certs=(saml_keys.idp,))
    setup = await register_idp(platform, idp, [saml_keys.idp.sha256])
    request_id = await setup.start_login()
    assert_refused(await setup.post(setup.response(request_id)))


@pytest.mark.parametrize(
    "value",
    [
        "%%% not base64 %%%",
        encode("this is not XML"),
        encode("<a><b></a>"),
        encode(b"\xff\xfe<\x00r\x00/\x00>\x00"),
        encode("<samlp:Response xmlns:samlp='urn:oasis:names:tc:SAML:2.0:protocol'/>"),
        encode("<r>" + "x" * 300_000 + "</r>"),
    ],
    ids=["bad-base64", "not-xml", "malformed", "utf16", "empty-response", "huge"],
)
async def test_garbage_is_refused_never_a_500(saml: SamlSetup, value: str) -> None:
    response = await saml.post_raw(value)
    assert response.status_code in (401, 422), response.text
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_refusals_are_audited(platform: Platform, saml: SamlSetup) -> None:
    await saml.post_raw("%%% not base64 %%%")
    async with platform.services.sessions() as session:
        records = [
            row.record
            for row in await session.scalars(
                select(AuditEventRecord).where(AuditEventRecord.event_type == "auth.sso")
            )
        ]
    assert any(saml.idp_id in r and "failure" in r and "base64" in r for r in records)


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"sp_entity_id": "https://other-sp.example.eu/metadata"}, "audience"),
        ({"acs_url": "https://other-sp.example.eu/acs"}, "Destination|Recipient"),
        ({"idp_entity_id": "https://other-idp.example.eu"}, "issuer"),
        ({"in_response_to": "id-other"}, "InResponseTo"),
        ({"now": datetime.now(UTC) - timedelta(hours=1)}, "not yet valid"),
    ],
    ids=["audience", "recipient", "issuer", "in-response-to", "not-yet-valid"],
)
async def test_our_own_checks_refuse_without_pysaml2(
    saml: SamlSetup, change: dict[str, object], fragment: str
) -> None:
    """The checks on the signed element stand on their own: a valid response read with one
    expectation changed is refused by saml_assertion, not only by pysaml2."""
    from dataclasses import replace

    from obsigen.federation.saml_assertion import Expectations, check_response, read_assertion
    from obsigen.federation.saml_xml import covered_assertion

    request_id = await saml.start_login()
    root = parse_strict(saml.response(request_id).encode())
    signed = covered_assertion(root)
    expect = Expectations(
        idp_entity_id="https://idp.example.eu/saml/idp",
        sp_entity_id=saml.sp_entity_id,
        acs_url=saml.acs_url,
        in_response_to=request_id,
        now=datetime.now(UTC),
        clock_skew=timedelta(seconds=60),
    )

    def check(expectations: Expectations) -> None:
        check_response(root, expectations)
        read_assertion(signed.element, expectations)

    check(expect)  # the valid case passes
    changed = replace(expect, **change)  # type: ignore[arg-type]
    with pytest.raises(SamlRefused, match=fragment):
        check(changed)
