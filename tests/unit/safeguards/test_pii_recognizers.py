"""Personal-data recognisers: valid identifiers are found, one wrong check digit is not,
ordinary numbers, dates and amounts are left alone."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import phonenumbers
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.fakes.identifiers import (
    CHECKSUM_IDENTIFIERS,
    Identifier,
    de_idnrs,
    emails,
    nl_bsns,
    phone_numbers,
    pl_pesels,
)

from obsigen.safeguards.pii_recognizers import PERSONAL_KINDS
from obsigen.safeguards.recognizers import Span, default_scanner

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SURROUNDINGS = st.sampled_from(
    [("{}", ""), ("Bitte {} prüfen.", "de"), ("Voici {}, merci", "fr"), ("(ver {})", "es")]
)


def scan(text: str) -> list[tuple[str, str]]:
    return [(s.kind, text[s.start : s.end]) for s in default_scanner().scan(text)]


def spans_of(text: str, kind: str) -> list[Span]:
    return [s for s in default_scanner().scan(text) if s.kind == kind]


def test_every_kind_has_a_generator() -> None:
    assert set(CHECKSUM_IDENTIFIERS) | {"email", "phone", "dk_cpr"} == PERSONAL_KINDS


@pytest.mark.parametrize("kind", sorted(CHECKSUM_IDENTIFIERS))
def test_valid_identifiers_are_found_and_wrong_check_digits_are_not(kind: str) -> None:
    @PROPERTY
    @given(CHECKSUM_IDENTIFIERS[kind](), SURROUNDINGS)
    def check(identifier: Identifier, surrounding: tuple[str, str]) -> None:
        template, _ = surrounding
        text = template.format(identifier.in_text())
        start = text.index(identifier.value)
        assert (kind, identifier.value) in scan(text), text
        (span,) = spans_of(text, kind)
        assert (span.start, span.end) == (start, start + len(identifier.value))

        wrong = template.format(identifier.in_text(identifier.wrong))
        # Only the kind is asserted: digits inside a mistyped id may still be a valid phone
        # number (phone numbers have no check digit); the id itself must not be recognised.
        assert spans_of(wrong, kind) == [], wrong

    check()


@pytest.mark.parametrize("strategy", [de_idnrs, nl_bsns, pl_pesels])
def test_digit_only_ids_need_their_label(
    strategy: Callable[[], st.SearchStrategy[Identifier]],
) -> None:
    @PROPERTY
    @given(strategy())
    def check(identifier: Identifier) -> None:
        assert scan(f"Bestellnummer {identifier.value} vom Montag") == []

    check()


@PROPERTY
@given(emails(), SURROUNDINGS)
def test_emails_are_found(address: str, surrounding: tuple[str, str]) -> None:
    text = surrounding[0].format(address)
    assert scan(text) == [("email", address)]


@pytest.mark.parametrize(
    "text",
    ["user at example dot com", "user@localhost", "@example.com", "mail me @ 9", "a@b.c"],
)
def test_not_an_email(text: str) -> None:
    assert scan(text) == []


def test_danish_cpr_has_no_check_digit_but_a_date() -> None:
    assert scan("CPR-nummer: 010190-1234") == [("dk_cpr", "010190-1234")]
    assert scan("CPR-nummer: 011390-1234") == []  # month 13


@PROPERTY
@given(
    phone_numbers(),
    st.sampled_from(
        [
            phonenumbers.PhoneNumberFormat.INTERNATIONAL,
            phonenumbers.PhoneNumberFormat.E164,
            phonenumbers.PhoneNumberFormat.NATIONAL,
        ]
    ),
)
def test_valid_phone_numbers_are_found(
    number: phonenumbers.PhoneNumber, style: phonenumbers.PhoneNumberFormat
) -> None:
    written = phonenumbers.format_number(number, style)
    text = f"Tel.: {written}, danke"
    assert ("phone", written) in scan(text)


@PROPERTY
@given(phone_numbers(), st.integers(2, 4))
def test_invalid_phone_numbers_are_not(number: phonenumbers.PhoneNumber, cut: int) -> None:
    digits = str(number.national_number)[:-cut]
    shortened = phonenumbers.parse(f"+{number.country_code}{digits}", None)
    if phonenumbers.is_valid_number(shortened):  # some plans have numbers of several lengths
        return
    written = f"+{number.country_code} {digits}"
    assert scan(f"Tel.: {written}") == []


@pytest.mark.parametrize(
    "text",
    [
        "Der Termin ist am 01.02.2024 um 10:30, Raum 12.",
        "Es kostet 1.234.567,89 EUR, also 1,234,567.89 USD oder 12.5 % mehr.",
        "Version 3.11.7 (build 20240115) ist seit 2023-11-05 verfügbar.",
        "Bestellung 123456789 vom 5/12/2023, Rechnung 2024-000123.",
        "Population: 83 240 525; area 357 588 km².",
        "Call me maybe at 10 or 11, ok?",
        "ISBN 978-3-16-148410-0 and order 20240115123",
        "Le prix est de 1 299,00 € TTC pour 2 personnes.",
        "The hash is 3f786850e387550fdab836ed7e6dc881de23001b.",
    ],
)
def test_ordinary_numbers_are_not_personal_data(text: str) -> None:
    assert scan(text) == []


@PROPERTY
@given(
    st.dates(),
    st.integers(0, 10**9),
    st.sampled_from(["{:%d.%m.%Y}", "{:%Y-%m-%d}", "{:%d/%m/%Y}", "{:%m/%d/%y}"]),
)
def test_dates_and_amounts_are_not_personal_data(day: date, cents: int, style: str) -> None:
    amount = f"{cents / 100:,.2f}"
    text = f"On {style.format(day)} we paid {amount} EUR ({amount.replace(',', '.')} €)."
    assert scan(text) == []
