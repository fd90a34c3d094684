"""API keys, the parts that need no database: lifetimes and the key's shape."""

from __future__ import annotations

from datetime import timedelta

import pytest

from obsigen.errors import InvalidInput
from obsigen.identity.apikeys import PREFIX, looks_like_api_key, parse_duration


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("90d", timedelta(days=90)),
        ("12h", timedelta(hours=12)),
        ("30m", timedelta(minutes=30)),
        ("2w", timedelta(weeks=2)),
        ("1d", timedelta(days=1)),
        (" 7d ", timedelta(days=7)),
        ("99999w", timedelta(weeks=99999)),
    ],
)
def test_parse_duration(value: str, expected: timedelta) -> None:
    assert parse_duration(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "0d",
        "00h",
        "-1d",
        "5y",
        "",
        " ",
        "d",
        "90",
        "1.5d",
        "90D",
        "90 d",
        "1d12h",
        "100000d",  # more than five digits
        "90s",
        "ninety days",
    ],
)
def test_parse_duration_refuses(value: str) -> None:
    with pytest.raises(InvalidInput, match="90d, 12h, 30m or 2w") as caught:
        parse_duration(value)
    assert caught.value.status == 422


def test_api_key_prefix() -> None:
    assert PREFIX == "obs_"


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("obs_abcdefghijklmnop_" + "A" * 43, True),
        ("obs_", True),  # only a routing hint; authentication checks the full shape
        ("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.sig", False),
        ("OBS_abcdefghijklmnop_" + "A" * 43, False),
        ("Bearer obs_abc", False),
        (" obs_abc", False),
        ("", False),
    ],
)
def test_looks_like_api_key(token: str, expected: bool) -> None:
    assert looks_like_api_key(token) is expected
