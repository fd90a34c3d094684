"""RFC 8785 JSON Canonicalization Scheme for the JSON we emit.

Hash chains and signatures are over these bytes, so an auditor re-creates them with any
RFC 8785 implementation from the exported JSON. The ``rfc8785`` package is not among our
dependencies; what we emit (str, int, float, bool, None, dict, list) is small enough to
serialise here, tested against the RFC's own examples.
"""

from __future__ import annotations

import json.encoder
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

# Integers up to 2**53 print the same in Python and ECMAScript.
MAX_SAFE_INTEGER = 2**53 - 1

_SHORT_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


# The json module's C string encoder (the ensure_ascii=False one) escapes exactly as RFC 8785
# 3.2.2.2 asks: the two-character forms for " \\ \b \t \n \f \r, \u00xx (lowercase hex) for the
# other control characters, everything else as it is. A test compares it with the reference
# loop below over every code point; it runs in C, the loop per character in Python, and audit
# records are canonicalised several times per event on the hot path of every chat turn.
_ENCODE_STRING: Callable[[str], str] = json.encoder.encode_basestring
_SURROGATE = re.compile(r"[\ud800-\udfff]")


class NotCanonicalisable(ValueError):
    """The value has no RFC 8785 form (NaN, infinity, lone surrogate, huge int, other type)."""


def canonical_bytes(value: Any) -> bytes:
    return canonical_text(value).encode("utf-8")


def canonical_text(value: Any) -> str:
    parts: list[str] = []
    _write(value, parts)
    return "".join(parts)


def _write(value: Any, out: list[str]) -> None:
    # The common exact types first (an audit record is mostly strings in dicts); a type that
    # is not exactly one of them goes down the general chain below.
    kind = type(value)
    if kind is str:
        out.append(_string(value))
    elif kind is dict:
        _object(value, out)
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif kind is int:
        out.append(_integer(value))
    else:
        _write_other(value, out)


def _write_other(value: Any, out: list[str]) -> None:
    # bool before int: True is an int in Python.
    if isinstance(value, int):
        out.append(_integer(value))
    elif isinstance(value, float):
        out.append(format_number(value))
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, Mapping):
        _object(value, out)
    elif isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _write(item, out)
        out.append("]")
    else:
        raise NotCanonicalisable(f"{type(value).__name__} is not a JSON value")


def _object(value: Mapping[Any, Any], out: list[str]) -> None:
    keys = list(value)
    for key in keys:
        if not isinstance(key, str):
            raise NotCanonicalisable("object keys must be strings")
    # RFC 8785 3.2.3: members sorted by the UTF-16 code units of their names; big-endian
    # UTF-16 bytes compare in exactly that order. For ASCII names (nearly always) that is
    # plain string order.
    if "".join(keys).isascii():
        keys.sort()
    else:
        keys.sort(key=_utf16)
    out.append("{")
    for index, key in enumerate(keys):
        if index:
            out.append(",")
        out.append(_string(key))
        out.append(":")
        _write(value[key], out)
    out.append("}")


def _utf16(text: str) -> bytes:
    try:
        return text.encode("utf-16-be")
    except UnicodeEncodeError as exc:
        raise NotCanonicalisable("lone surrogate in a string") from exc


def _string(text: str) -> str:
    # isascii() is a flag lookup; only non-ASCII text can hold a surrogate.
    if not text.isascii() and _SURROGATE.search(text) is not None:
        raise NotCanonicalisable("lone surrogate in a string")
    return _ENCODE_STRING(text)


def reference_string(text: str) -> str:
    """RFC 8785 3.2.2.2 spelled out, character by character: what ``_string`` must equal."""
    chars: list[str] = ['"']
    for char in text:
        escaped = _SHORT_ESCAPES.get(char)
        if escaped is not None:
            chars.append(escaped)
        elif char < " ":
            chars.append(f"\\u{ord(char):04x}")
        elif "\ud800" <= char <= "\udfff":
            raise NotCanonicalisable("lone surrogate in a string")
        else:
            chars.append(char)
    chars.append('"')
    return "".join(chars)


def _integer(value: int) -> str:
    if abs(value) <= MAX_SAFE_INTEGER:
        return str(value)
    # JSON numbers are doubles (RFC 8785 3.2.2.3): a larger integer is the nearest double,
    # exactly as a parser reading the number back (e.g. "53703209733212990") will see it.
    try:
        return format_number(float(value))
    except OverflowError as exc:
        raise NotCanonicalisable(f"integer {value} is beyond the range of a double") from exc


def format_number(value: float) -> str:
    """ECMAScript Number.prototype.toString (ECMA-262 7.1.12.1), as RFC 8785 3.2.2.3 requires.

    Python's repr gives the shortest digit string that round-trips, as ECMAScript does; only
    the layout (where the point goes, when to switch to exponent form) differs.
    """
    if math.isnan(value) or math.isinf(value):
        raise NotCanonicalisable("NaN and infinity have no JSON form")
    if value == 0:
        return "0"  # -0 too
    sign = "-" if value < 0 else ""
    digits, exponent = _shortest_digits(abs(value))
    k, n = len(digits), exponent  # value = 0.digits * 10**n
    if k <= n <= 21:
        body = digits + "0" * (n - k)
    elif 0 < n <= 21:
        body = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        body = "0." + "0" * -n + digits
    else:
        e = n - 1
        mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
        body = f"{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"
    return sign + body


def _shortest_digits(value: float) -> tuple[str, int]:
    """(significant digits, n) with value == 0.<digits> * 10**n; value > 0."""
    mantissa, _, exp_text = repr(value).partition("e")
    whole, _, fraction = mantissa.partition(".")
    all_digits = whole + fraction
    significant = all_digits.lstrip("0")
    leading_zeros = len(all_digits) - len(significant)
    n = len(whole) - leading_zeros + (int(exp_text) if exp_text else 0)
    return significant.rstrip("0"), n
