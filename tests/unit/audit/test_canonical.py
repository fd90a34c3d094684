"""RFC 8785 canonical JSON, checked against the examples printed in the RFC."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from obsigen.audit.canonical import (
    NotCanonicalisable,
    canonical_bytes,
    canonical_text,
    format_number,
    reference_string,
)


def from_bits(bits: str) -> float:
    value: float = struct.unpack(">d", bytes.fromhex(bits))[0]
    return value


# RFC 8785 Appendix B: IEEE 754 bit patterns and their required serialisation.
APPENDIX_B = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


@pytest.mark.parametrize(("bits", "expected"), APPENDIX_B)
def test_numbers_of_appendix_b(bits: str, expected: str) -> None:
    assert format_number(from_bits(bits)) == expected


@pytest.mark.parametrize("bits", ["7fffffffffffffff", "7ff0000000000000", "fff0000000000000"])
def test_nan_and_infinity_are_refused(bits: str) -> None:
    with pytest.raises(NotCanonicalisable):
        format_number(from_bits(bits))


def test_example_of_section_3_2_2() -> None:
    # The input is parsed JSON, as in the RFC (number literals go through a double).
    source = (
        '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
        ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
        ' "literals": [null, true, false]}'
    )
    expected = (
        '{"literals":[null,true,false],'
        '"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    assert canonical_text(json.loads(source)) == expected
    assert canonical_bytes(json.loads(source)) == expected.encode("utf-8")


def test_property_sorting_of_section_3_2_3() -> None:
    source = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    keys = list(json.loads(canonical_text(source)))
    # UTF-16 order puts the emoji (a surrogate pair, 0xD83D...) before U+FB33.
    assert keys == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]


def test_strings_escape_only_what_json_requires() -> None:
    text = 'a"b\\c\u0001\u001f\u007f\u2028é😀/'
    assert canonical_text(text) == '"a\\"b\\\\c\\u0001\\u001f\u007f\u2028é😀/"'


def test_the_fast_string_encoder_equals_the_rfc_loop_on_every_code_point() -> None:
    # The C encoder must escape exactly what RFC 8785 3.2.2.2 escapes, character for character.
    for start in range(0, 0x110000, 4096):
        chunk = "".join(chr(c) for c in range(start, start + 4096) if not 0xD800 <= c <= 0xDFFF)
        assert canonical_text(chunk) == reference_string(chunk)
    for control in range(0x20):
        assert canonical_text(chr(control)) == reference_string(chr(control))


@pytest.mark.parametrize("text", ["\ud800", "ok \udbff then", "x" * 500 + "\udfff"])
def test_a_lone_surrogate_anywhere_in_a_string_is_refused(text: str) -> None:
    with pytest.raises(NotCanonicalisable):
        canonical_text(text)
    with pytest.raises(NotCanonicalisable):
        reference_string(text)


@given(st.text(st.characters(exclude_categories=("Cs",))))
def test_any_text_encodes_as_the_reference_does(text: str) -> None:
    assert canonical_text(text) == reference_string(text)


def test_subclasses_and_other_containers_take_the_general_path_to_the_same_form() -> None:
    class Text(str):
        pass

    class Count(int):
        pass

    class Frozen(Mapping[str, Any]):
        def __init__(self, data: dict[str, Any]) -> None:
            self._data = data

        def __getitem__(self, key: str) -> Any:
            return self._data[key]

        def __iter__(self) -> Iterator[str]:
            return iter(self._data)

        def __len__(self) -> int:
            return len(self._data)

    plain = {"b": ["x", 2], "a": {"é": 1, "z": 2}}
    odd = Frozen({Text("b"): (Text("x"), Count(2)), "a": Frozen({"z": 2, "é": 1})})
    assert canonical_text(odd) == canonical_text(plain) == '{"a":{"z":2,"é":1},"b":["x",2]}'


def test_big_integers_take_the_form_of_their_double() -> None:
    assert canonical_text(2**53) == "9007199254740992"
    assert canonical_text(10**21) == "1e+21"
    assert canonical_text(-(10**23) - 8388608) == "-1.0000000000000001e+23"
    assert canonical_text(2**53 + 1) == "9007199254740992"  # the nearest double


def test_nested_structures_and_literals() -> None:
    value = {"b": [1, {"d": None, "c": True}], "a": False, "e": -7}
    assert canonical_text(value) == '{"a":false,"b":[1,{"c":true,"d":null}],"e":-7}'
    assert canonical_text([]) == "[]"
    assert canonical_text({}) == "{}"
    assert canonical_text((1, 2)) == "[1,2]"


@pytest.mark.parametrize(
    "value",
    [
        10**400,
        "\ud800",
        {"\udfff": 1},
        b"bytes",
        {1: "non-string key"},
        {1.5},
        object(),
    ],
)
def test_values_without_a_canonical_form_are_refused(value: Any) -> None:
    with pytest.raises(NotCanonicalisable):
        canonical_text(value)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=("Cs",))),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(st.characters(exclude_categories=("Cs",))), children, max_size=4)
    ),
    max_leaves=20,
)


@given(json_values)
def test_canonical_form_round_trips_and_is_a_fixed_point(value: Any) -> None:
    text = canonical_text(value)
    parsed = json.loads(text)
    assert canonical_text(parsed) == text


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_numbers_parse_back_to_the_same_double(value: float) -> None:
    assert float(format_number(value)) == value or value == 0
