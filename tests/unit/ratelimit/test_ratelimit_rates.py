"""Parsing rates as operators write them, and refusing what GCRA cannot represent."""

from __future__ import annotations

import pytest

from obsigen.config import Settings
from obsigen.ratelimit.rates import Rate, parse_optional_rate, parse_rate


@pytest.mark.parametrize(
    ("text", "limit", "period_s"),
    [
        ("120/minute", 120, 60),
        ("10/second", 10, 1),
        ("5/s", 5, 1),
        ("1000000/day", 1_000_000, 86_400),
        ("3/hour", 3, 3600),
        ("50 / 2 minutes", 50, 120),
        ("7 per 10 seconds", 7, 10),
        ("4/MIN", 4, 60),
        ("2/days", 2, 86_400),
    ],
)
def test_parses_common_forms(text: str, limit: int, period_s: int) -> None:
    assert parse_rate(text) == Rate(limit, period_s)


@pytest.mark.parametrize("text", ["", "10", "ten/minute", "5/ms", "5/week", "0/minute", "-1/s"])
def test_refuses_what_is_not_a_rate(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rate(text)


def test_unlimited_means_no_rate() -> None:
    assert parse_optional_rate("unlimited") is None
    assert parse_optional_rate(" Unlimited ") is None
    assert parse_optional_rate("3/s") == Rate(3, 1)


def test_gcra_intervals_are_whole_microseconds_and_allow_a_full_burst() -> None:
    rate = parse_rate("7/second")
    assert rate.emission_interval_us == 142_857
    # The tolerance is defined from the interval, so 7 back-to-back requests still fit.
    assert rate.tolerance_us == 7 * 142_857
    with pytest.raises(ValueError, match="1,000,000"):
        Rate(2_000_000, 1)


def test_settings_refuse_a_bad_rate_at_load() -> None:
    with pytest.raises(ValueError, match="unknown unit"):
        Settings(ratelimit={"tenant": "5/fortnight"})
    with pytest.raises(ValueError):
        Settings(ratelimit={"endpoints": {"/v1/chat/completions": "lots"}})
    with pytest.raises(ValueError):
        Settings(ratelimit={"reads_on_store_down": "ignore"})
    settings = Settings(
        ratelimit={"endpoints": {"/healthz": "unlimited"}, "reads_on_store_down": "open"}
    )
    assert settings.ratelimit.reads_on_store_down == "open"
