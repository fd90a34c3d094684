"""Rates as operators write them: ``"120/minute"``, ``"1000000/day"``, ``"5/10seconds"``."""

from __future__ import annotations

import re
from dataclasses import dataclass

UNLIMITED = "unlimited"

_UNITS_S = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_ALIASES = {"s": "second", "sec": "second", "m": "minute", "min": "minute", "h": "hour", "d": "day"}
_RATE = re.compile(r"^\s*(\d+)\s*(?:/|per)\s*(\d+)?\s*([a-z]+)\s*$")


@dataclass(frozen=True, slots=True)
class Rate:
    """``limit`` events per ``period_s`` seconds."""

    limit: int
    period_s: int

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError("a rate needs a limit of at least 1 (use 'unlimited' for none)")
        if self.period_s < 1:
            raise ValueError("a rate needs a period of at least one second")
        # GCRA spaces events one emission interval apart in whole microseconds.
        if self.period_us // self.limit < 1:
            raise ValueError("a rate may allow at most 1,000,000 events per second")

    @property
    def period_us(self) -> int:
        return self.period_s * 1_000_000

    @property
    def emission_interval_us(self) -> int:
        # Floor, with the burst tolerance defined as interval * limit, so a full burst of
        # ``limit`` always fits; the sustained rate is faster by < 1 µs per event at most.
        return self.period_us // self.limit

    @property
    def tolerance_us(self) -> int:
        return self.emission_interval_us * self.limit

    def __str__(self) -> str:
        return f"{self.limit}/{self.period_s}s"


def parse_rate(text: str) -> Rate:
    """Parse ``N/unit`` or ``N/M units`` (unit: second, minute, hour, day; s, m, h, d)."""
    match = _RATE.match(text.lower())
    if match is None:
        raise ValueError(f"not a rate: {text!r} (expected e.g. '120/minute' or '1000000/day')")
    count, multiple, unit = match.groups()
    # Plurals of whole words only: "ms" must not read as minutes.
    if unit.endswith("s") and (unit[:-1] in _UNITS_S or unit[:-1] in ("sec", "min")):
        unit = unit[:-1]
    unit = _ALIASES.get(unit, unit)
    if unit not in _UNITS_S:
        raise ValueError(f"unknown unit in rate {text!r}: use second, minute, hour or day")
    return Rate(limit=int(count), period_s=int(multiple or 1) * _UNITS_S[unit])


def parse_optional_rate(text: str) -> Rate | None:
    """Like :func:`parse_rate`, but ``"unlimited"`` (or empty) means no limit at that scope."""
    if text.strip().lower() in ("", UNLIMITED):
        return None
    return parse_rate(text)
