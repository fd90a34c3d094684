"""Fake personal identifiers and credentials for the safeguards tests, as hypothesis strategies.

Each identifier is built with a correct check digit (computed with python-stdnum's own
helpers where it has one, by the published rule where it does not) and comes with a way to
spoil it: the same identifier with one check digit changed. The label is what a person writes
in front of it (ids that are only digits count only behind their label).
"""

from __future__ import annotations

import string
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import phonenumbers
from hypothesis import strategies as st
from stdnum import iban, luhn
from stdnum.at import uid as at_uid
from stdnum.at import vnr as at_vnr
from stdnum.es import dni as es_dni
from stdnum.es import nie as es_nie
from stdnum.fr import nir as fr_nir
from stdnum.iso7064 import mod_11_10
from stdnum.it import codicefiscale as it_codicefiscale
from stdnum.pl import pesel as pl_pesel
from stdnum.pt import nif as pt_nif
from stdnum.ro import cnp as ro_cnp


@dataclass(frozen=True)
class Identifier:
    kind: str
    value: str  # as written, possibly with spaces or dashes
    wrong: str  # the same with a wrong check digit
    label: str = ""  # written in front of it, e.g. "BSN:"

    def in_text(self, value: str | None = None) -> str:
        return f"{self.label} {value or self.value}".strip()


def digits(n: int) -> st.SearchStrategy[str]:
    return st.text(string.digits, min_size=n, max_size=n)


def _other_digit(d: str, shift: int) -> str:
    return str((int(d) + shift) % 10)


def _spoil_last(value: str, shift: int) -> str:
    return value[:-1] + _other_digit(value[-1], shift)


def _groups(value: str, sizes: tuple[int, ...], sep: str) -> str:
    out, at = [], 0
    for size in sizes:
        out.append(value[at : at + size])
        at += size
    return sep.join(out)


shifts = st.integers(1, 9)
dates = st.dates(min_value=date(1931, 1, 1), max_value=date(1999, 12, 28))


# --- checksum identifiers ------------------------------------------------------------------------

_BBAN_DIGITS = {"DE": 18, "AT": 16, "PL": 24}


@st.composite
def ibans(draw: st.DrawFn) -> Identifier:
    country = draw(st.sampled_from(["DE", "AT", "PL", "NL", "IT"]))
    if country == "NL":
        bban = draw(st.text(string.ascii_uppercase, min_size=4, max_size=4)) + draw(digits(10))
    elif country == "IT":
        bban = draw(st.sampled_from("ABCDEFGHIJ")) + draw(digits(22))
    else:
        bban = draw(digits(_BBAN_DIGITS[country]))
    check = iban.calc_check_digits(f"{country}00{bban}")
    value = f"{country}{check}{bban}"
    shift = draw(shifts)
    wrong = value[:2] + _other_digit(value[2], shift) + value[3:]
    spaced = draw(st.booleans())
    return Identifier(
        "iban", iban.format(value) if spaced else value, iban.format(wrong) if spaced else wrong
    )


_CARD_PREFIXES = (("4", 16), ("4", 13), ("51", 16), ("55", 16), ("2221", 16), ("34", 15))
_CARD_PREFIXES += (("37", 15), ("6011", 16), ("65", 19), ("3530", 16), ("36", 14))


@st.composite
def payment_cards(draw: st.DrawFn) -> Identifier:
    prefix, length = draw(st.sampled_from(_CARD_PREFIXES))
    body = prefix + draw(digits(length - len(prefix) - 1))
    value = body + luhn.calc_check_digit(body)
    wrong = _spoil_last(value, draw(shifts))
    sep = draw(st.sampled_from(["", " ", "-"]))
    if sep and length == 16:
        return Identifier(
            "payment_card", _groups(value, (4, 4, 4, 4), sep), _groups(wrong, (4, 4, 4, 4), sep)
        )
    return Identifier("payment_card", value, wrong)


@st.composite
def de_idnrs(draw: st.DrawFn) -> Identifier:
    # The first ten digits: one digit twice, one missing, the others once; no leading zero.
    missing, double = draw(
        st.sampled_from([(m, d) for m in range(10) for d in range(10) if m != d])
    )
    first = [str(d) for d in range(10) if d != missing] + [str(double)]
    first = draw(st.permutations(first).filter(lambda p: p[0] != "0"))
    body = "".join(first)
    value = body + mod_11_10.calc_check_digit(body)
    wrong = _spoil_last(value, draw(shifts))
    spaced = draw(st.booleans())
    fmt = (lambda v: _groups(v, (2, 3, 3, 3), " ")) if spaced else (lambda v: v)
    label = draw(st.sampled_from(["Steuer-ID:", "Steuer-ID", "steuerliche IdNr.", "Tax ID"]))
    return Identifier("de_idnr", fmt(value), fmt(wrong), label)


@st.composite
def nl_bsns(draw: st.DrawFn) -> Identifier:
    body = draw(digits(8).filter(lambda d: d != "00000000"))
    total = sum(w * int(d) for w, d in zip(range(9, 1, -1), body, strict=True))
    check = total % 11
    value = body + str(check if check < 10 else 0)
    if check == 10:
        value = draw(st.nothing())
    wrong = _spoil_last(value, draw(shifts))
    return Identifier("nl_bsn", value, wrong, draw(st.sampled_from(["BSN:", "BSN", "mijn bsn is"])))


@st.composite
def pl_pesels(draw: st.DrawFn) -> Identifier:
    born = draw(dates)
    body = f"{born:%y%m%d}" + draw(digits(4))
    value = body + pl_pesel.calc_check_digit(body)
    return Identifier("pl_pesel", value, _spoil_last(value, draw(shifts)), "PESEL:")


@st.composite
def fr_nirs(draw: st.DrawFn) -> Identifier:
    born = draw(dates)
    sex = draw(st.sampled_from("12"))
    department = f"{draw(st.integers(1, 95).filter(lambda d: d != 20)):02d}"
    body = f"{sex}{born:%y%m}{department}{draw(st.integers(1, 990)):03d}"
    body += f"{draw(st.integers(1, 999)):03d}"
    value = body + fr_nir.calc_check_digits(body)
    key = int(value[-2:])
    wrong = value[:-2] + f"{(key + draw(shifts)) % 97:02d}"
    spaced = draw(st.booleans())
    fmt = (lambda v: _groups(v, (1, 2, 2, 2, 3, 3, 2), " ")) if spaced else (lambda v: v)
    return Identifier("fr_nir", fmt(value), fmt(wrong))


_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"


def _other_letter(letter: str, shift: int) -> str:
    return _LETTERS[(_LETTERS.index(letter) + shift) % len(_LETTERS)]


@st.composite
def es_dnis(draw: st.DrawFn) -> Identifier:
    body = draw(digits(8))
    value = body + es_dni.calc_check_digit(body)
    wrong = body + _other_letter(value[-1], draw(st.integers(1, 22)))
    return Identifier("es_dni", value, wrong)


@st.composite
def es_nies(draw: st.DrawFn) -> Identifier:
    body = draw(st.sampled_from("XYZ")) + draw(digits(7))
    value = body + es_nie.calc_check_digit(body)
    wrong = body + _other_letter(value[-1], draw(st.integers(1, 22)))
    return Identifier("es_nie", value, wrong)


_MONTHS = "ABCDEHLMPRST"


@st.composite
def it_codici_fiscali(draw: st.DrawFn) -> Identifier:
    born = draw(dates)
    day = born.day + draw(st.sampled_from([0, 40]))
    body = (
        draw(st.text(string.ascii_uppercase, min_size=6, max_size=6))
        + f"{born:%y}{_MONTHS[born.month - 1]}{day:02d}"
        + draw(st.sampled_from(string.ascii_uppercase))
        + draw(digits(3))
    )
    value = body + it_codicefiscale.calc_check_digit(body)
    check = string.ascii_uppercase.index(value[-1])
    wrong = body + string.ascii_uppercase[(check + draw(st.integers(1, 25))) % 26]
    return Identifier("it_codice_fiscale", value, wrong)


@st.composite
def be_nns(draw: st.DrawFn) -> Identifier:
    born = draw(dates)
    body = f"{born:%y%m%d}{draw(st.integers(1, 997)):03d}"
    check = 97 - int(body) % 97
    value = f"{body}{check:02d}"
    wrong = f"{body}{(check + draw(shifts)) % 97:02d}"
    fmt = lambda v: f"{v[:2]}.{v[2:4]}.{v[4:6]}-{v[6:9]}.{v[9:]}"  # noqa: E731
    return Identifier("be_nn", fmt(value), fmt(wrong), "Rijksregisternummer:")


@st.composite
def at_vnrs(draw: st.DrawFn) -> Identifier:
    born = draw(dates)
    serial = f"{draw(st.integers(100, 999))}"
    body = f"{serial}0{born:%d%m%y}"
    check = at_vnr.calc_check_digit(body)
    if len(check) != 1:
        check = draw(st.nothing())
    value = serial + check + body[4:]
    wrong = serial + _other_digit(check, draw(shifts)) + body[4:]
    return Identifier("at_vnr", value, wrong, "Sozialversicherungsnummer:")


@st.composite
def se_personnummers(draw: st.DrawFn) -> Identifier:
    born = draw(dates)
    body = f"{born:%y%m%d}" + draw(digits(3))
    value = body + luhn.calc_check_digit(body)
    wrong = _spoil_last(value, draw(shifts))
    return Identifier("se_personnummer", f"{value[:6]}-{value[6:]}", f"{wrong[:6]}-{wrong[6:]}",
                      "personnummer")  # fmt: skip


@st.composite
def pt_nifs(draw: st.DrawFn) -> Identifier:
    body = draw(st.sampled_from("12")) + draw(digits(7))
    value = body + pt_nif.calc_check_digit(body)
    return Identifier("pt_nif", value, _spoil_last(value, draw(shifts)), "NIF:")


@st.composite
def ro_cnps(draw: st.DrawFn) -> Identifier:
    born = draw(dates)
    body = f"{draw(st.sampled_from('12'))}{born:%y%m%d}{draw(st.integers(1, 46)):02d}"
    body += f"{draw(st.integers(1, 999)):03d}"
    value = body + ro_cnp.calc_check_digit(body)
    return Identifier("ro_cnp", value, _spoil_last(value, draw(shifts)), "CNP")


@st.composite
def cz_rcs(draw: st.DrawFn) -> Identifier:
    # Ten-digit numbers with a check digit exist since 1954.
    born = draw(st.dates(min_value=date(1960, 1, 1), max_value=date(1999, 12, 28)))
    month = born.month + draw(st.sampled_from([0, 50]))
    body = f"{born:%y}{month:02d}{born:%d}{draw(digits(3))}"
    value = body + str(int(body) % 11 % 10)
    wrong = _spoil_last(value, draw(shifts))
    return Identifier("cz_rc", f"{value[:6]}/{value[6:]}", f"{wrong[:6]}/{wrong[6:]}",
                      "rodné číslo")  # fmt: skip


@st.composite
def hr_oibs(draw: st.DrawFn) -> Identifier:
    body = draw(digits(10))
    value = body + mod_11_10.calc_check_digit(body)
    return Identifier("hr_oib", value, _spoil_last(value, draw(shifts)), "OIB:")


@st.composite
def gr_amkas(draw: st.DrawFn) -> Identifier:
    born = draw(dates)
    body = f"{born:%d%m%y}" + draw(digits(4))
    value = body + luhn.calc_check_digit(body)
    return Identifier("gr_amka", value, _spoil_last(value, draw(shifts)), "AMKA")


_HETU = "0123456789ABCDEFHJKLMNPRSTUVWXY"


@st.composite
def fi_hetus(draw: st.DrawFn) -> Identifier:
    born = draw(dates)
    individual = f"{draw(st.integers(2, 899)):03d}"
    number = int(f"{born:%d%m%y}{individual}")
    check = _HETU[number % 31]
    wrong = _HETU[(number + draw(st.integers(1, 30))) % 31]
    head = f"{born:%d%m%y}-{individual}"
    return Identifier("fi_hetu", head + check, head + wrong)


@st.composite
def eu_vats(draw: st.DrawFn) -> Identifier:
    country = draw(st.sampled_from(["DE", "AT", "BE", "FR"]))
    shift = draw(shifts)
    if country == "DE":
        body = draw(st.sampled_from("123456789")) + draw(digits(7))
        value = body + mod_11_10.calc_check_digit(body)
        wrong = _spoil_last(value, shift)
    elif country == "AT":
        body = "U" + draw(digits(7))
        value = body + at_uid.calc_check_digit(body)
        wrong = _spoil_last(value, shift)
    elif country == "BE":
        body = "0" + draw(st.sampled_from("123456789")) + draw(digits(6))
        check = 97 - int(body) % 97
        value, wrong = f"{body}{check:02d}", f"{body}{(check + shift) % 97:02d}"
    else:
        siren = draw(st.sampled_from("123456789")) + draw(digits(7))
        siren += luhn.calc_check_digit(siren)
        key = int(siren + "12") % 97
        value, wrong = f"{key:02d}{siren}", f"{(key + shift) % 97:02d}{siren}"
    sep = draw(st.sampled_from(["", " "]))
    return Identifier("eu_vat", f"{country}{sep}{value}", f"{country}{sep}{wrong}")


CHECKSUM_IDENTIFIERS: dict[str, Callable[[], st.SearchStrategy[Identifier]]] = {
    "iban": ibans,
    "payment_card": payment_cards,
    "eu_vat": eu_vats,
    "fr_nir": fr_nirs,
    "es_dni": es_dnis,
    "es_nie": es_nies,
    "it_codice_fiscale": it_codici_fiscali,
    "fi_hetu": fi_hetus,
    "de_idnr": de_idnrs,
    "nl_bsn": nl_bsns,
    "pl_pesel": pl_pesels,
    "be_nn": be_nns,
    "at_vnr": at_vnrs,
    "se_personnummer": se_personnummers,
    "pt_nif": pt_nifs,
    "ro_cnp": ro_cnps,
    "cz_rc": cz_rcs,
    "hr_oib": hr_oibs,
    "gr_amka": gr_amkas,
}


# --- e-mail and phone numbers ----------------------------------------------------------------

_LOCAL = string.ascii_lowercase + string.digits


@st.composite
def emails(draw: st.DrawFn) -> str:
    words = draw(st.lists(st.text(_LOCAL, min_size=1, max_size=10), min_size=1, max_size=3))
    local = draw(st.sampled_from([".", "_", "-", "+"])).join(words)
    labels = draw(
        st.lists(
            st.text(_LOCAL, min_size=1, max_size=12).filter(lambda s: not s.isdigit()),
            min_size=1,
            max_size=3,
        )
    )
    tld = draw(st.text(string.ascii_lowercase, min_size=2, max_size=6))
    return f"{local}@{'.'.join(labels)}.{tld}"


PHONE_REGIONS = ("DE", "FR", "ES", "IT", "NL", "PL", "BE", "AT", "SE", "PT", "IE", "FI")


@st.composite
def phone_numbers(draw: st.DrawFn) -> phonenumbers.PhoneNumber:
    """A valid number: a region's example number with its last digits changed."""
    region = draw(st.sampled_from(PHONE_REGIONS))
    kind = draw(st.sampled_from([phonenumbers.PhoneNumberType.MOBILE,
                                 phonenumbers.PhoneNumberType.FIXED_LINE]))  # fmt: skip
    example = phonenumbers.example_number_for_type(region, kind)
    assert example is not None
    national = str(example.national_number)
    changed = national[:-3] + draw(digits(3))
    number = phonenumbers.parse(f"+{example.country_code}{changed}", None)
    if not phonenumbers.is_valid_number(number):
        number = draw(st.nothing())
    return number


# --- texts with personal data and credentials in them ---------------------------------------

WORDS = (
    "the", "invoice", "is", "attached", "please", "check", "und", "bitte", "Rechnung", "prüfen",
    "merci", "de", "vérifier", "la", "facture", "Grüße", "Ana", "on", "Monday", "at", "10:30",
    "amount", "1.234,56", "EUR", "2024", "ok", "→", "für", "Zürich", "données", "(see", "below)",
)  # fmt: skip
SEPARATORS = (" ", " ", " ", ", ", ". ", "\n", "\n\n", ": ", " - ")
# Written right before a datum: a number there would run into it ("2024 4111 1111 ..." reads
# as one number, and a card number is not looked for inside a longer run of digit groups).
LEADS = ("see", "siehe", "voir", "is", "an", "von", "Kontakt", "nummer", "→")


@st.composite
def personal_data(draw: st.DrawFn) -> str:
    """A personal datum as written in a text, with its label when it needs one."""
    choice = draw(st.integers(0, 2))
    if choice == 0:
        return draw(emails())
    if choice == 1:
        number = draw(phone_numbers())
        return "+" + phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)[1:]
    kind = draw(st.sampled_from(sorted(CHECKSUM_IDENTIFIERS)))
    return draw(CHECKSUM_IDENTIFIERS[kind]()).in_text()


@st.composite
def credentials(draw: st.DrawFn) -> tuple[str, str]:
    """(as written, the secret itself)."""
    alnum = string.ascii_letters + string.digits
    choice = draw(st.integers(0, 3))
    if choice == 0:
        secret = "AKIA" + draw(st.text(string.ascii_uppercase + string.digits, min_size=16,
                                       max_size=16))  # fmt: skip
        return secret, secret
    if choice == 1:
        secret = "ghp_" + draw(st.text(alnum, min_size=36, max_size=36))
        return secret, secret
    if choice == 2:
        secret = draw(st.text(alnum, min_size=6, max_size=16)) + "9!"
        return f"password={secret}", secret
    body = "\n".join(draw(st.lists(st.text(alnum + "+/", min_size=8, max_size=40), min_size=1,
                                   max_size=4)))  # fmt: skip
    block = f"-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----"
    return block, block


@dataclass(frozen=True)
class Document:
    text: str
    personal: tuple[str, ...]
    secrets: tuple[str, ...]


@st.composite
def documents(draw: st.DrawFn, *, with_secrets: bool = True, max_items: int = 4) -> Document:
    parts: list[str] = []
    personal: list[str] = []
    found_secrets: list[str] = []
    for _ in range(draw(st.integers(1, max_items))):
        parts.extend(draw(st.lists(st.sampled_from(WORDS), max_size=6)))
        parts.append(draw(st.sampled_from(LEADS)))
        if with_secrets and draw(st.booleans()):
            written, secret = draw(credentials())
            parts.append(written)
            found_secrets.append(secret)
        else:
            datum = draw(personal_data())
            parts.append(datum)
            personal.append(datum)
        parts.extend(draw(st.lists(st.sampled_from(WORDS), max_size=4)))
    text = ""
    for part in parts:
        text += part + draw(st.sampled_from(SEPARATORS))
    return Document(text, tuple(personal), tuple(found_secrets))
