"""Recognisers for secrets and personal data, and the scanner that combines them.

A recogniser finds typed spans in a text. The scanner runs them all and returns one list of
non-overlapping spans, secrets first: a personal datum that overlaps a credential (an e-mail
address that is really ``user:password@host``) is treated as part of the credential, so a
credential can never come back inside a restored placeholder.

Every recogniser takes ``pos``: it reports spans starting at or after ``pos`` but may read the
text before it (word boundaries, a label like "BSN:" in front of a number). The streaming output
filter relies on that to scan one piece at a time with the same result as a scan of the whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Literal, Protocol

Category = Literal["secret", "personal"]


@dataclass(frozen=True, slots=True, order=True)
class Span:
    start: int
    end: int
    kind: str  # "aws_key", "email", "de_idnr", ...
    category: Category


class Recognizer(Protocol):
    def find(self, text: str, pos: int = 0) -> Iterator[Span]: ...


@dataclass(frozen=True, slots=True)
class Scanner:
    recognizers: tuple[Recognizer, ...]

    def scan(self, text: str, pos: int = 0) -> list[Span]:
        found = [span for r in self.recognizers for span in r.find(text, pos)]
        if not found:
            return []
        secrets = _non_overlapping(s for s in found if s.category == "secret")
        personal = _non_overlapping(s for s in found if s.category == "personal")
        return sorted([*secrets, *_outside(personal, secrets)])


def _outside(spans: list[Span], taken: list[Span]) -> list[Span]:
    """The spans that overlap none of ``taken`` (both sorted and each non-overlapping)."""
    kept: list[Span] = []
    index = 0
    for span in spans:
        while index < len(taken) and taken[index].end <= span.start:
            index += 1
        if index == len(taken) or taken[index].start >= span.end:
            kept.append(span)
    return kept


def _non_overlapping(spans: Iterable[Span]) -> list[Span]:
    """Leftmost first, the longest where two start together; a phone number (no check digit)
    gives way to an identifier with the same extent."""
    chosen: list[Span] = []
    end = -1
    for span in sorted(spans, key=lambda s: (s.start, s.start - s.end, s.kind == "phone")):
        if span.start >= end:
            chosen.append(span)
            end = span.end
    return chosen


@cache
def default_scanner() -> Scanner:
    """Every recogniser with its defaults; built once (compiling the patterns takes a while)."""
    from obsigen.safeguards.pii_recognizers import personal_data_recognizers
    from obsigen.safeguards.secret_recognizers import secret_recognizers

    return Scanner((*secret_recognizers(), *personal_data_recognizers()))
