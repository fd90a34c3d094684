"""Text normalisation for the detectors: undo the tricks that hide an attack from a pattern.

An attacker who knows we look for "ignore previous instructions" writes it with Cyrillic
lookalikes, zero-width spaces between the letters, in leetspeak, or base64-encoded with a
request to decode it. :func:`normalise` folds all of that back so the rules and the model see
the plain words, and it counts the tricks, because their presence is a signal of its own.

The result carries *views*: the folded text first, then a leetspeak-folded variant, then every
payload it could decode. Detectors look at each view and the worst one counts.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
import unicodedata
import urllib.parse
from dataclasses import dataclass, field
from typing import Literal

PayloadKind = Literal["base64", "hex", "binary", "rot13", "url", "unicode-tags", "leet"]

MAX_SCAN_CHARS = 20_000
MAX_PAYLOADS = 8
_MIN_PAYLOAD_TEXT = 8

# Invisible in rendering, so they hide letters between letters. U+200C/U+200D are ordinary in
# Indic and Arabic-script text and in emoji sequences, so they are only counted between Latin
# letters (see _strip_invisible); they are removed everywhere.
_ZERO_WIDTH = frozenset(
    "\u200b\u200c\u200d\u2060\u2061\u2062\u2063\u2064\ufeff\u180e\u034f\u115f\u1160\u3164\uffa0"
)
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")
# Removed without counting: ordinary in real text (hyphenation hints, emoji presentation).
_SILENT = frozenset("\u00ad\ufe0e\ufe0f")
_TAG_BASE, _TAG_FIRST, _TAG_LAST = 0xE0000, 0xE0020, 0xE007E
_TAG_ANY = range(0xE0000, 0xE0080)
_VARIATION_SUPPLEMENT = range(0xE0100, 0xE01F0)

# The common lookalikes of Latin letters (Unicode confusables.txt, the Cyrillic, Greek and
# Armenian letters that render identically in most fonts). NFKC already folds fullwidth forms
# and mathematical alphanumerics, so they are not listed.
_CONFUSABLES: dict[str, str] = {
    # Cyrillic
    "а": "a", "в": "b", "с": "c", "е": "e", "һ": "h", "і": "i", "ј": "j", "к": "k",
    "м": "m", "н": "h", "о": "o", "р": "p", "ԛ": "q", "ѕ": "s", "т": "t", "ո": "n",
    "ԝ": "w", "х": "x", "у": "y", "ү": "y", "ѵ": "v", "ԁ": "d", "ɡ": "g", "ӏ": "l",
    "А": "A", "В": "B", "С": "C", "Е": "E", "Н": "H", "І": "I", "Ј": "J", "К": "K",
    "М": "M", "О": "O", "Р": "P", "Ѕ": "S", "Т": "T", "Х": "X", "У": "Y", "Ү": "Y",
    "Ԁ": "D", "Ԍ": "G", "Ԛ": "Q", "Ԝ": "W", "Ӏ": "I",
    # Greek
    "α": "a", "ο": "o", "ρ": "p", "ν": "v", "ι": "i", "κ": "k", "τ": "t", "υ": "u",
    "χ": "x", "γ": "y", "ε": "e",
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M",
    "Ν": "N", "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X",
    # Armenian and Latin extensions
    "օ": "o", "ս": "u", "ց": "g", "ɩ": "i", "ı": "i", "ȷ": "j", "ɑ": "a", "ʏ": "y",
}  # fmt: skip
_CONFUSABLE_TABLE = str.maketrans({k: v for k, v in _CONFUSABLES.items() if len(k) == 1})

_LEET = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "@": "a", "$": "s"}
)
_TOKEN = re.compile(r"\S+")
_LETTER_DIGIT_MIX = re.compile(r"(?=\S*[A-Za-z])(?=\S*[0-9@$])[A-Za-z0-9@$]{3,}")
# "i g n o r e" / "i.g.n.o.r.e" / "i-g-n-o-r-e": five or more single letters in a row.
_SPACED_LETTERS = re.compile(r"(?<![\w])(?:[A-Za-z][ .\-_*]){4,}[A-Za-z](?![\w])")

_BASE64 = re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/_-]{16,}={0,2}(?![A-Za-z0-9+/=_-])")
_HEX = re.compile(r"(?<!\w)(?:[0-9A-Fa-f]{2}(?:[ :](?=[0-9A-Fa-f]{2}))?){8,}(?!\w)")
_HEX_ESCAPES = re.compile(r"(?:\\x[0-9A-Fa-f]{2}){6,}")
_BINARY = re.compile(r"(?<![01])(?:[01]{8}[ ]?){6,}(?![01])")
_PERCENT = re.compile(r"(?:%[0-9A-Fa-f]{2}[^%\s]{0,3}){6,}")
_SEGMENTS = re.compile(r"[^\n.!?\"'“”«»]+")


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# The most frequent English words: rot13 text turns into them when decoded, ordinary English
# turns away from them, which is how a rot13 segment is told apart without being announced.
_COMMON_EN = _words(
    "the a an and or of to in on for with is are be you your me my i it this that all "
    "any not no do does what how now from as at by tell say print give show write "
    "ignore previous instructions instruction prompt system rules above password "
    "secret key reveal forget must will can new task act pretend mode answer respond "
    "output"
)


@dataclass(frozen=True, slots=True)
class Payload:
    """Text recovered from an encoding; detectors judge it as if it had been written plainly."""

    kind: PayloadKind
    text: str


@dataclass(frozen=True, slots=True)
class Normalised:
    text: str
    views: tuple[str, ...]
    payloads: tuple[Payload, ...] = ()
    zero_width: int = 0
    bidi: int = 0
    tag_chars: int = 0
    confusables: int = 0
    leet_tokens: int = 0
    signals: tuple[str, ...] = field(default=())

    @property
    def obfuscated(self) -> bool:
        return bool(self.signals)


def normalise(text: str) -> Normalised:
    """Fold ``text`` for the detectors; see the module docstring."""
    text = text[:MAX_SCAN_CHARS]
    hidden, text, tag_chars = _extract_tags(text)
    text, zero_width, bidi = _strip_invisible(text)
    text = unicodedata.normalize("NFKC", text)
    text, confusables = _fold_confusables(text)
    text = _squeeze_space(text)

    payloads: list[Payload] = []
    if hidden.strip():
        payloads.append(Payload("unicode-tags", hidden))
    payloads.extend(_decode_payloads(text))
    leet, leet_tokens = _fold_leet(text)

    views = [text]
    if leet != text:
        views.append(leet)
        payloads.append(Payload("leet", leet))
    for payload in payloads:
        if payload.kind != "leet" and payload.text not in views:
            views.append(payload.text)

    signals: list[str] = []
    if zero_width >= 2:
        signals.append("zero-width")
    if bidi >= 1:
        signals.append("bidi")
    if tag_chars:
        signals.append("unicode-tags")
    if confusables:
        signals.append("confusables")
    return Normalised(
        text=text,
        views=tuple(views),
        payloads=tuple(payloads[:MAX_PAYLOADS]),
        zero_width=zero_width,
        bidi=bidi,
        tag_chars=tag_chars,
        confusables=confusables,
        leet_tokens=leet_tokens,
        signals=tuple(signals),
    )


def _extract_tags(text: str) -> tuple[str, str, int]:
    """Unicode tag characters mirror ASCII invisibly ("ASCII smuggling"): read them out."""
    if not any(ord(ch) in _TAG_ANY or ord(ch) in _VARIATION_SUPPLEMENT for ch in text):
        return "", text, 0
    hidden: list[str] = []
    visible: list[str] = []
    count = 0
    for ch in text:
        code = ord(ch)
        if code in _TAG_ANY:
            count += 1
            if _TAG_FIRST <= code <= _TAG_LAST:
                hidden.append(chr(code - _TAG_BASE))
        elif code in _VARIATION_SUPPLEMENT:
            # Variation selectors 17-256 carry a byte each in "emoji smuggling".
            count += 1
            hidden.append(chr((code - _VARIATION_SUPPLEMENT.start + 16) % 256))
        else:
            visible.append(ch)
    return "".join(hidden), "".join(visible), count


def _strip_invisible(text: str) -> tuple[str, int, int]:
    if not any(ch in _ZERO_WIDTH or ch in _BIDI or ch in _SILENT for ch in text):
        return text, 0, 0
    out: list[str] = []
    zero_width = bidi = 0
    for index, ch in enumerate(text):
        if ch in _BIDI:
            bidi += 1
        elif ch in _ZERO_WIDTH:
            if ch in "\u200c\u200d":
                before = text[index - 1] if index else ""
                after = text[index + 1] if index + 1 < len(text) else ""
                if before.isascii() and before.isalpha() and after.isascii() and after.isalpha():
                    zero_width += 1
            elif not (ch == "\ufeff" and index == 0):
                zero_width += 1
        elif ch not in _SILENT:
            out.append(ch)
    return "".join(out), zero_width, bidi


def _is_latin_letter(ch: str) -> bool:
    return ch.isalpha() and ("LATIN" in unicodedata.name(ch, "") or ch.isascii())


def _fold_confusables(text: str) -> tuple[str, int]:
    """Fold lookalike letters inside words that are otherwise Latin (mixed-script words).

    Real Greek or Russian words are left alone: folding them would turn honest non-Latin text
    into Latin gibberish. A word written wholly in lookalikes is folded only when the text
    around it is mostly Latin.
    """
    if text.isascii():
        return text, 0
    letters = [ch for ch in text if ch.isalpha()]
    latin = sum(1 for ch in letters if _is_latin_letter(ch))
    mostly_latin = bool(letters) and latin / len(letters) >= 0.6
    folded = 0

    def fold(match: re.Match[str]) -> str:
        nonlocal folded
        word = match.group(0)
        if word.isascii() or not any(ch in _CONFUSABLES for ch in word):
            return word
        has_latin = any(_is_latin_letter(ch) for ch in word)
        all_confusable = all(ch in _CONFUSABLES or not ch.isalpha() for ch in word)
        if has_latin and all(
            _is_latin_letter(ch) or ch in _CONFUSABLES for ch in word if ch.isalpha()
        ):
            folded += 1
            return word.translate(_CONFUSABLE_TABLE)
        if mostly_latin and all_confusable:
            folded += 1
            return word.translate(_CONFUSABLE_TABLE)
        return word

    return _TOKEN.sub(fold, text), folded


def _squeeze_space(text: str) -> str:
    # Exotic spaces (NBSP, thin, ideographic) are folded by NFKC; runs of them are squeezed so
    # a pattern's single space matches. Newlines are kept: they separate instructions.
    return re.sub(r"[ \t\f\v]+", " ", text)


def _fold_leet(text: str) -> tuple[str, int]:
    count = 0

    def fold_token(match: re.Match[str]) -> str:
        nonlocal count
        token = match.group(0)
        letters = sum(ch.isalpha() for ch in token)
        # "1gn0r3" and "4ll" fold; "sha256", "mp3", "v2" (a trailing number), "2023" (mostly
        # digits) and long tokens (hashes, base64) do not.
        if letters < 2 or letters < len(token) / 3 or len(token) > 24:
            return token
        if token.rstrip("0123456789").isalpha():
            return token
        # Digits with no letter lookalike (2, 6, 9) mean a hash, a version or a unit: "0b2beeb".
        if any(ch in "269" for ch in token) or re.fullmatch(r"[0-9a-fA-F]{7,}", token):
            return token
        count += 1
        return token.translate(_LEET)

    folded = _LETTER_DIGIT_MIX.sub(fold_token, text)
    folded = _SPACED_LETTERS.sub(lambda m: re.sub(r"[ .\-_*]", "", m.group(0)), folded)
    return folded, count


def _decode_payloads(text: str) -> list[Payload]:
    payloads: list[Payload] = []
    seen: set[str] = set()

    def add(kind: PayloadKind, decoded: str | None) -> None:
        if decoded is None or decoded in seen or len(payloads) >= MAX_PAYLOADS:
            return
        seen.add(decoded)
        payloads.append(Payload(kind, decoded))
        # One level of nesting (base64 of hex, rot13 inside base64) is common in attacks.
        for inner in _decode_once(decoded):
            if inner.text not in seen and len(payloads) < MAX_PAYLOADS:
                seen.add(inner.text)
                payloads.append(inner)

    for payload in _decode_once(text):
        add(payload.kind, payload.text)
    return payloads


def _decode_once(text: str) -> list[Payload]:
    found: list[Payload] = []
    for match in _BASE64.finditer(text):
        decoded = _b64(match.group(0))
        if decoded is not None:
            found.append(Payload("base64", decoded))
    for match in _HEX.finditer(text):
        decoded = _bytes_text(_unhex(re.sub(r"[ :]", "", match.group(0))))
        if decoded is not None:
            found.append(Payload("hex", decoded))
    for match in _HEX_ESCAPES.finditer(text):
        decoded = _bytes_text(_unhex(match.group(0).replace("\\x", "")))
        if decoded is not None:
            found.append(Payload("hex", decoded))
    for match in _BINARY.finditer(text):
        bits = match.group(0).replace(" ", "")
        raw = bytes(int(bits[i : i + 8], 2) for i in range(0, len(bits) - 7, 8))
        decoded = _bytes_text(raw)
        if decoded is not None:
            found.append(Payload("binary", decoded))
    for match in _PERCENT.finditer(text):
        decoded = urllib.parse.unquote(match.group(0))
        if decoded != match.group(0) and _is_text(decoded):
            found.append(Payload("url", decoded))
    rot = _rot13_segments(text)
    if rot:
        found.append(Payload("rot13", rot))
    return found


def _b64(candidate: str) -> str | None:
    # Identifiers and hashes match the alphabet too; real text in base64 has mixed case or
    # digits mixed with letters, and decodes to printable UTF-8, which is checked below.
    if candidate.isalpha() and (candidate.islower() or candidate.isupper()):
        return None
    stripped = candidate.rstrip("=")
    padded = stripped + "=" * (-len(stripped) % 4)
    try:
        if "-" in padded or "_" in padded:
            raw = base64.urlsafe_b64decode(padded)
        else:
            raw = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        return None
    return _bytes_text(raw)


def _unhex(digits: str) -> bytes:
    try:
        return bytes.fromhex(digits[: len(digits) - len(digits) % 2])
    except ValueError:
        return b""


def _bytes_text(raw: bytes) -> str | None:
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return decoded if _is_text(decoded) else None


def _is_text(decoded: str) -> bool:
    """Decoded bytes count as a payload only when they read as words, not as binary noise."""
    if len(decoded.strip()) < _MIN_PAYLOAD_TEXT:
        return False
    printable = sum(ch.isprintable() or ch in "\n\t" for ch in decoded)
    letters = sum(ch.isalpha() for ch in decoded)
    spaces = decoded.count(" ")
    return printable / len(decoded) > 0.95 and letters / len(decoded) > 0.5 and spaces >= 1


def _rot13_segments(text: str) -> str:
    """The segments that read as English once rot13-decoded and not before."""
    decoded: list[str] = []
    for match in _SEGMENTS.finditer(text):
        segment = match.group(0)
        words = re.findall(r"[A-Za-z]+", segment)
        if len(words) < 3:
            continue
        before = sum(w.lower() in _COMMON_EN for w in words) / len(words)
        rotated = codecs.decode(segment, "rot13")
        after_words = re.findall(r"[A-Za-z]+", rotated)
        after = sum(w.lower() in _COMMON_EN for w in after_words) / len(after_words)
        if after >= 0.3 and after > before + 0.2:
            decoded.append(rotated.strip())
    return ". ".join(decoded)


__all__ = ["Normalised", "Payload", "PayloadKind", "normalise"]
