"""Personal data: e-mail, phone numbers, IBAN, EU VAT numbers, payment cards, national ids.

Identifiers with a check digit are only reported when the check digit is right (python-stdnum
does the validation, phonenumbers decides what is a valid number). Ordinary numbers must not
look like personal data, so:

- ids that are only digits with a weak check (one valid number in ten or eleven, e.g. the Dutch
  BSN or the German Steuer-ID) count only behind a label naming them ("BSN:", "Steuer-ID",
  "PESEL", ...); ids with a distinctive shape (an IBAN, a VAT number with its country prefix, a
  French NIR, a Spanish DNI, an Italian codice fiscale, a card number with a known issuer
  prefix and Luhn) count anywhere;
- phone numbers count in international form (+49 ..., 0049 ...) anywhere; in national form when
  written like one (a trunk-prefixed area code and a separator: 030 1234567, (089) 123456)
  or behind a label ("Tel.", "phone", "móvil", ...); never when the digits read as a date.
  Phone numbers have no check digit, so where a span is also a valid id, the id wins.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import phonenumbers
from stdnum import iban, luhn
from stdnum.at import vnr as at_vnr
from stdnum.be import nn as be_nn
from stdnum.cz import rc as cz_rc
from stdnum.de import idnr as de_idnr
from stdnum.dk import cpr as dk_cpr
from stdnum.es import dni as es_dni
from stdnum.es import nie as es_nie
from stdnum.eu import vat as eu_vat
from stdnum.fi import hetu as fi_hetu
from stdnum.fr import nir as fr_nir
from stdnum.gr import amka as gr_amka
from stdnum.hr import oib as hr_oib
from stdnum.it import codicefiscale as it_codicefiscale
from stdnum.nl import bsn as nl_bsn
from stdnum.pl import pesel as pl_pesel
from stdnum.pt import nif as pt_nif
from stdnum.ro import cnp as ro_cnp
from stdnum.se import personnummer as se_personnummer

from obsigen.safeguards.recognizers import Recognizer, Span

# How far before a number we look for the label that names it.
LABEL_WINDOW = 40

# The EU/EEA regions tried for phone numbers written without a country code, in this order.
DEFAULT_PHONE_REGIONS = (
    "DE", "FR", "IT", "ES", "NL", "PL", "BE", "AT", "SE", "PT", "CZ", "RO", "GR", "HU", "DK",
    "FI", "IE", "SK", "BG", "HR", "SI", "LT", "LV", "EE", "LU", "MT", "CY", "NO", "IS", "LI",
)  # fmt: skip

_SEPARATORS = re.compile(r"[ .\-/()]+")
_DIGIT = re.compile(r"\d")
_DATE = re.compile(r"\(?\d{1,4}\)?[./-]\d{1,2}[./-]\d{1,4}")


def _shorter(candidate: str, min_len: int) -> Iterator[str]:
    """The candidate, then without its last group each time: greedy patterns run on into the
    next number ("4111 1111 1111 1111 2025"), and the real datum is the front part."""
    while len(candidate) >= min_len:
        yield candidate
        parts = list(_SEPARATORS.finditer(candidate))
        if not parts:
            return
        candidate = candidate[: parts[-1].start()]


def _label_before(text: str, start: int, label: re.Pattern[str]) -> bool:
    return label.search(text, max(0, start - LABEL_WINDOW), start) is not None


# --- e-mail ----------------------------------------------------------------------------------

_EMAIL = re.compile(
    r"(?<![\w.%+-])[\w%+-](?:[\w.%+-]{0,62}[\w%+-])?"
    r"@(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.){1,8}[^\W\d_]{2,24}(?![\w-]|\.[^\W_])"
)


class EmailRecognizer:
    def find(self, text: str, pos: int = 0) -> Iterator[Span]:
        if text.find("@", pos) == -1:
            return
        for match in _EMAIL.finditer(text, pos):
            yield Span(match.start(), match.end(), "email", "personal")


# --- phone numbers -----------------------------------------------------------------------------

_PHONE_INTERNATIONAL = re.compile(r"(?<![\w+])(?:\+|\b00)\s?[1-9][\d \-./()]{5,22}\d(?!\w)")
# Not inside a longer number ("1 85 05 78 006 ..." holds no phone number starting at "05").
# Written like a phone number: a trunk-prefixed area code, then a separator (030 1234567,
# 06-12345678, (089) 123456). A bare run of digits may be any id: it needs a label.
_PHONE_NATIONAL = re.compile(
    r"(?<![\w+.,/-])(?<!\d[ .\-/])(?:\(0\d{1,4}\)\s?|0\d{1,4}[ /.\-])\d[\d \-./]{2,16}\d(?!\w)"
)
_PHONE_LABELLED = re.compile(r"(?<![\w+.,/-])(?<!\d[ .\-/])\(?\d[\d \-./()]{5,18}\d(?!\w)")
_PHONE_LABEL = re.compile(
    r"(?i)\b(?:tel|tél|telefon|telephone|téléphone|teléfono|telefono|telefone|phone|mobile?"
    r"|mobil|handy|cell|cellulare|móvil|movil|portable|gsm|fax|ruf|call|whatsapp)"
)


class PhoneRecognizer:
    def __init__(self, regions: tuple[str, ...] = DEFAULT_PHONE_REGIONS) -> None:
        self._regions = regions

    def find(self, text: str, pos: int = 0) -> Iterator[Span]:
        if not _DIGIT.search(text, pos):
            return
        for match in _PHONE_INTERNATIONAL.finditer(text, pos):
            found = self._first_valid(match.group(), (None,))
            if found:
                yield Span(match.start(), match.start() + len(found), "phone", "personal")
        for pattern, labelled in ((_PHONE_NATIONAL, False), (_PHONE_LABELLED, True)):
            for match in pattern.finditer(text, pos):
                if labelled and not _label_before(text, match.start(), _PHONE_LABEL):
                    continue
                found = self._first_valid(match.group(), self._regions)
                if found:
                    yield Span(match.start(), match.start() + len(found), "phone", "personal")

    def _first_valid(self, candidate: str, regions: tuple[str | None, ...]) -> str | None:
        for text in _shorter(candidate, 7):
            if _DATE.fullmatch(text):
                continue
            number = "+" + text[2:] if text.startswith("00") else text
            for region in regions:
                try:
                    parsed = phonenumbers.parse(number, region)
                except phonenumbers.NumberParseException:
                    continue
                if phonenumbers.is_valid_number(parsed):
                    return text
        return None


# --- IBAN and VAT ------------------------------------------------------------------------------

_IBAN = re.compile(r"(?i)(?<![\w])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![\w])")
_VAT_PREFIXES = (
    "AT|BE|BG|CY|CZ|DE|DK|EE|EL|ES|FI|FR|HR|HU|IE|IT|LT|LU|LV|MT|NL|PL|PT|RO|SE|SI|SK|XI"
)
# Spaces only after the country code: inside, they would reach into the next number.
_VAT = re.compile(rf"(?<![\w])(?:{_VAT_PREFIXES})[ -]?[0-9A-Z][0-9A-Z+*.]{{6,14}}[0-9A-Z](?![\w])")


@dataclass(frozen=True, slots=True)
class _Validated:
    """A pattern whose candidates count when a validator accepts them (or a front part)."""

    kind: str
    regex: re.Pattern[str]
    is_valid: Callable[[str], bool]
    min_len: int = 8
    needs_digit: bool = True

    def find(self, text: str, pos: int = 0) -> Iterator[Span]:
        if self.needs_digit and not _DIGIT.search(text, pos):
            return
        for match in self.regex.finditer(text, pos):
            for candidate in _shorter(match.group(), self.min_len):
                if self.is_valid(candidate):
                    yield Span(match.start(), match.start() + len(candidate), self.kind, "personal")
                    break


# --- identifiers with letters: distinctive enough to count anywhere ---------------------------

_FISCAL_DIGIT = "[0-9LMNPQRSTUVlmnpqrstuv]"


def _upper(validate: Callable[[str], bool]) -> Callable[[str], bool]:
    return lambda value: validate(value.upper())


def _letter_ids() -> tuple[Recognizer, ...]:
    return (
        _Validated(
            "es_dni",
            re.compile(r"(?<![\w-])\d{8}[ -]?[A-Za-z](?![\w])"),
            _upper(es_dni.is_valid),
        ),
        _Validated(
            "es_nie",
            re.compile(r"(?<![\w-])[XYZxyz][ -]?\d{7}[ -]?[A-Za-z](?![\w])"),
            _upper(es_nie.is_valid),
        ),
        _Validated(
            "it_codice_fiscale",
            re.compile(
                rf"(?<![\w])[A-Za-z]{{6}}{_FISCAL_DIGIT}{{2}}[A-Za-z]{_FISCAL_DIGIT}{{2}}"
                rf"[A-Za-z]{_FISCAL_DIGIT}{{3}}[A-Za-z](?![\w])"
            ),
            _upper(it_codicefiscale.is_valid),
            # Omocodia may replace every digit by a letter.
            needs_digit=False,
        ),
        _Validated(
            "fi_hetu",
            re.compile(r"(?<![\w])\d{6}[-+A-FU-Ya-fu-y]\d{3}[0-9A-Ya-y](?![\w])"),
            _upper(fi_hetu.is_valid),
        ),
    )


# --- numbers: payment cards and national ids -------------------------------------------------

# Not starting inside a longer run of digit groups (the tail of an account or IBAN).
_NUMBER = re.compile(r"(?<![\w+.,/-])(?<!\d[ .\-/])\d(?:[ .\-/]?\d){7,22}(?![\w])")


def _card_issuer_known(d: str) -> bool:
    """The issuer prefixes and lengths of the card schemes in use in the EU."""
    n, two, three, four = len(d), int(d[:2]), int(d[:3]), int(d[:4])
    if d[0] == "4":
        return n in (13, 16, 19)
    if 51 <= two <= 55 or 2221 <= four <= 2720:
        return n == 16
    if two in (34, 37):
        return n == 15
    if 300 <= three <= 305 or two in (36, 38, 39):
        return 14 <= n <= 19
    if 3528 <= four <= 3589 or two in (62, 65) or four == 6011 or 644 <= three <= 649:
        return 16 <= n <= 19
    return two == 50 or 56 <= two <= 69  # Maestro: 12-19, and we only see 13+


def is_payment_card(digits: str) -> bool:
    return 13 <= len(digits) <= 19 and _card_issuer_known(digits) and luhn.is_valid(digits)


@dataclass(frozen=True, slots=True)
class _NationalNumber:
    kind: str
    lengths: tuple[int, ...]
    is_valid: Callable[[str], bool]
    label: re.Pattern[str] | None  # None: strong enough to count without a label


def _label(words: str) -> re.Pattern[str]:
    return re.compile(rf"(?i)(?<![\w])(?:{words})")


_NATIONAL_NUMBERS = (
    _NationalNumber("fr_nir", (15,), fr_nir.is_valid, None),
    _NationalNumber(
        "de_idnr",
        (11,),
        de_idnr.is_valid,
        _label(
            r"steuer[- ]?id|steuer-?identifikations|identifikationsnummer|idnr|tin\b|tax[- ]?id"
        ),
    ),
    _NationalNumber("nl_bsn", (9,), nl_bsn.is_valid, _label(r"bsn\b|burgerservice|sofi")),
    _NationalNumber("pl_pesel", (11,), pl_pesel.is_valid, _label(r"pesel")),
    _NationalNumber(
        "be_nn",
        (11,),
        be_nn.is_valid,
        _label(r"rijksregister|registre national|num[ée]ro national|national number|insz|niss"),
    ),
    _NationalNumber(
        "at_vnr",
        (10,),
        at_vnr.is_valid,
        _label(r"sozialversicherung|versicherungsnummer|svnr|sv-nr|sv-nummer"),
    ),
    _NationalNumber(
        "se_personnummer",
        (10, 12),
        se_personnummer.is_valid,
        _label(r"personnummer|personal (?:id(?:entity)? )?number|pnr\b"),
    ),
    _NationalNumber("dk_cpr", (10,), dk_cpr.is_valid, _label(r"cpr")),
    _NationalNumber("pt_nif", (9,), pt_nif.is_valid, _label(r"nif\b|contribuinte")),
    _NationalNumber("ro_cnp", (13,), ro_cnp.is_valid, _label(r"cnp\b|cod numeric personal")),
    _NationalNumber("cz_rc", (9, 10), cz_rc.is_valid, _label(r"rodn[ée] [čc][íi]slo|r\.?[čc]\.")),
    _NationalNumber("hr_oib", (11,), hr_oib.is_valid, _label(r"oib\b")),
    _NationalNumber("gr_amka", (11,), gr_amka.is_valid, _label(r"amka|αμκα")),
)


class NumberRecognizer:
    """Digit runs (with the usual separators): payment cards first, then national ids."""

    def find(self, text: str, pos: int = 0) -> Iterator[Span]:
        if not _DIGIT.search(text, pos):
            return
        for match in _NUMBER.finditer(text, pos):
            found = self._first_valid(text, match.start(), match.group())
            if found is not None:
                yield found

    def _first_valid(self, text: str, offset: int, candidate: str) -> Span | None:
        for front in _shorter(candidate, 8):
            kind = self._kind(text, offset, re.sub(r"\D", "", front))
            if kind is not None:
                return Span(offset, offset + len(front), kind, "personal")
        return None

    @staticmethod
    def _kind(text: str, start: int, digits: str) -> str | None:
        if is_payment_card(digits):
            return "payment_card"
        for number in _NATIONAL_NUMBERS:
            if len(digits) not in number.lengths:
                continue
            if number.label is not None and not _label_before(text, start, number.label):
                continue
            if number.is_valid(digits):
                return number.kind
        return None


PERSONAL_KINDS = frozenset(
    {"email", "phone", "iban", "eu_vat", "payment_card", "es_dni", "es_nie"}
    | {"it_codice_fiscale", "fi_hetu"}
    | {number.kind for number in _NATIONAL_NUMBERS}
)


def personal_data_recognizers(
    phone_regions: tuple[str, ...] = DEFAULT_PHONE_REGIONS,
) -> tuple[Recognizer, ...]:
    return (
        EmailRecognizer(),
        PhoneRecognizer(phone_regions),
        _Validated("iban", _IBAN, iban.is_valid, min_len=15),
        _Validated("eu_vat", _VAT, eu_vat.is_valid),
        *_letter_ids(),
        NumberRecognizer(),
    )
