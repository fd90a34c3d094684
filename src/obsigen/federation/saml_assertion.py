"""Checks on a verified SAML Response and the identity read from its one signed assertion.

pysaml2 checks much of this too; we check again on the element whose signature we located
(saml_xml.covered_assertion), so a wrapped or duplicated element cannot supply any value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from lxml import etree  # type: ignore[import-untyped]

from obsigen.federation.saml_xml import SAML, SAMLP, SamlRefused

BEARER = "urn:oasis:names:tc:SAML:2.0:cm:bearer"
STATUS_SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
NAMEID_EMAIL = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
NAMEID_TRANSIENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"
_FRACTION = re.compile(r"(\.\d{1,6})\d*")


@dataclass(frozen=True, slots=True)
class Expectations:
    """What the response must say for this sign-in."""

    idp_entity_id: str
    sp_entity_id: str
    acs_url: str
    # The AuthnRequest id we are answering, or None for an IdP-initiated response.
    in_response_to: str | None
    now: datetime
    clock_skew: timedelta


@dataclass(frozen=True, slots=True)
class AssertionFacts:
    assertion_id: str
    name_id: str
    name_id_format: str | None
    # The latest instant the assertion is valid (replay-cache lifetime).
    valid_until: datetime
    authn_contexts: tuple[str, ...]
    attributes: dict[str, tuple[str, ...]]


def _q(name: str) -> str:
    return f"{{{SAML}}}{name}"


def parse_instant(value: str | None, what: str) -> datetime:
    if not value:
        raise SamlRefused(f"{what}: missing")
    try:
        parsed = datetime.fromisoformat(_FRACTION.sub(r"\1", value.strip()))
    except ValueError:
        raise SamlRefused(f"{what}: not an xs:dateTime") from None
    if parsed.tzinfo is None:
        # SAML core 1.3.3: times are UTC.
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def _text(element: etree._Element) -> str:
    # The whole text content: saml_xml has refused comments, so nothing can split it.
    return "".join(element.itertext()).strip()


def check_response(response: etree._Element, expect: Expectations) -> None:
    """The Response envelope: status, destination, issuer, InResponseTo."""
    status = response.find(f"{{{SAMLP}}}Status/{{{SAMLP}}}StatusCode")
    if status is None or status.get("Value") != STATUS_SUCCESS:
        raise SamlRefused("the identity provider reported a failure status")
    if response.get("Destination") != expect.acs_url:
        raise SamlRefused("Destination is not our assertion consumer service")
    issuer = response.find(_q("Issuer"))
    if issuer is not None and _text(issuer) != expect.idp_entity_id:
        raise SamlRefused("the response comes from another issuer")
    if response.get("InResponseTo") != expect.in_response_to:
        raise SamlRefused("InResponseTo does not match our request")


def _check_window(
    not_before: str | None, not_on_or_after: str | None, expect: Expectations, what: str
) -> datetime:
    early = not_before is not None and (
        parse_instant(not_before, f"{what} NotBefore") > expect.now + expect.clock_skew
    )
    if early:
        raise SamlRefused(f"{what}: not yet valid")
    until = parse_instant(not_on_or_after, f"{what} NotOnOrAfter")
    if until <= expect.now - expect.clock_skew:
        raise SamlRefused(f"{what}: expired")
    return until


def _subject(assertion: etree._Element, expect: Expectations) -> tuple[str, str | None, datetime]:
    subject = assertion.find(_q("Subject"))
    if subject is None:
        raise SamlRefused("the assertion has no Subject")
    name_ids = subject.findall(_q("NameID"))
    if len(name_ids) != 1 or len(name_ids[0]):
        raise SamlRefused("the assertion needs exactly one plain NameID")
    name_id = _text(name_ids[0])
    if not name_id:
        raise SamlRefused("the NameID is empty")
    confirmed: datetime | None = None
    for confirmation in subject.findall(_q("SubjectConfirmation")):
        data = confirmation.find(_q("SubjectConfirmationData"))
        if confirmation.get("Method") != BEARER or data is None:
            continue
        if data.get("Recipient") != expect.acs_url:
            raise SamlRefused("Recipient is not our assertion consumer service")
        if data.get("InResponseTo") != expect.in_response_to:
            raise SamlRefused("InResponseTo of the subject confirmation does not match")
        confirmed = _check_window(
            data.get("NotBefore"), data.get("NotOnOrAfter"), expect, "SubjectConfirmationData"
        )
        break
    if confirmed is None:
        raise SamlRefused("no bearer SubjectConfirmation")
    return name_id, name_ids[0].get("Format"), confirmed


def _conditions(assertion: etree._Element, expect: Expectations) -> datetime:
    conditions = assertion.findall(_q("Conditions"))
    if len(conditions) != 1:
        raise SamlRefused("the assertion needs one Conditions element")
    element = conditions[0]
    until = _check_window(
        element.get("NotBefore"), element.get("NotOnOrAfter"), expect, "Conditions"
    )
    restrictions = element.findall(_q("AudienceRestriction"))
    if not restrictions:
        raise SamlRefused("the assertion names no audience")
    for restriction in restrictions:
        # Every restriction must admit us (SAML core 2.5.1.4).
        audiences = {_text(a) for a in restriction.findall(_q("Audience"))}
        if expect.sp_entity_id not in audiences:
            raise SamlRefused("the assertion is meant for another audience")
    return until


def _attributes(assertion: etree._Element) -> dict[str, tuple[str, ...]]:
    found: dict[str, list[str]] = {}
    for attribute in assertion.iter(_q("Attribute")):
        values = [_text(v) for v in attribute.findall(_q("AttributeValue"))]
        for key in {attribute.get("Name"), attribute.get("FriendlyName")}:
            if key:
                found.setdefault(key, []).extend(values)
    return {key: tuple(values) for key, values in found.items()}


def read_assertion(assertion: etree._Element, expect: Expectations) -> AssertionFacts:
    assertion_id = assertion.get("ID")
    if not assertion_id:
        raise SamlRefused("the assertion has no ID")
    issuer = assertion.find(_q("Issuer"))
    if issuer is None or _text(issuer) != expect.idp_entity_id:
        raise SamlRefused("the assertion comes from another issuer")
    name_id, name_format, confirmed_until = _subject(assertion, expect)
    conditions_until = _conditions(assertion, expect)
    if assertion.find(_q("AuthnStatement")) is None:
        raise SamlRefused("the assertion has no AuthnStatement")
    contexts = tuple(
        _text(ref)
        for ref in assertion.iter(_q("AuthnContextClassRef"))
        if ref.getparent() is not None
    )
    return AssertionFacts(
        assertion_id=assertion_id,
        name_id=name_id,
        name_id_format=name_format,
        valid_until=max(confirmed_until, conditions_until),
        authn_contexts=contexts,
        attributes=_attributes(assertion),
    )
