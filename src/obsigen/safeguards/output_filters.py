"""Output filters: mask credentials and personal data in the answer, block a leaked canary.

The answer streams. To catch a datum split across two deltas without holding back the whole
answer, the filter cuts the text into *segments* at places no datum can span, and scans one
complete segment at a time. Where the cuts go depends only on the text, never on where the
deltas happened to break, so a streamed answer is filtered exactly like the same answer in one
piece (the property tests check every split position).

Cuts go at whitespace, except where both neighbouring words could belong to one datum: a datum
with spaces inside (``DE89 3704 0044 ...``, ``+49 30 123456``, ``password = hunter2``) is
made of digit-bearing groups, short groups, labels ending in ``:`` or ``=`` and
password words, so a cut is made only next to a plain word of five or more letters, or at a
line break, or once a segment reaches ``max_segment`` characters. A private-key block is one
segment from its BEGIN line to the line break after its END line. What is held back is thus
the last word or two, or a run of numbers, not the answer.

The filter sees the model's text before placeholders are restored, so values the user gave
come back untouched, while personal data the model produced itself (from a document, a tool
result or its training) is masked.
"""

from __future__ import annotations

import re

from obsigen.assistant.hooks import OutputFilter
from obsigen.errors import ObsigenError
from obsigen.safeguards.recognizers import Scanner, Span, default_scanner
from obsigen.safeguards.redaction import apply

MAX_SEGMENT = 512
MAX_KEY_BLOCK = 16_384
CONTEXT = 64  # already-filtered text kept for look-behind (labels in front of numbers)

_PIECES = re.compile(r"\s+|\S+")
_HAS_SPACE = re.compile(r"\s")
_KEYWORD = re.compile(
    r"(?i)pass|pwd|kennwort|secret|token|key|contrase|senha|parola|wachtwoord|has[łl]o|l[öo]sen"
    r"|bearer|auth|tel|phone|iban|konto|account"
)
_WORD_EDGES = ".,;!?\"'()[]{}«»“”„"
# A segment without any of these holds only plain words: nothing any recogniser looks for.
_WORTH_SCANNING = re.compile(r"[\d@=:\"'_/+\\`!#$%^&*?~-]|\.\S|[^\W\d_]{16,}")


class OutputBlocked(ObsigenError):
    # 422, not 502: the model answered and nothing upstream failed; our policy refused the
    # answer. OpenAI-compatible clients retry 5xx on their own, which would only run the same
    # leaking turn again; 451 is for legal demands (RFC 7725), which this is not.
    status = 422
    type_slug = "output-blocked"
    title = "The answer was withheld by an output safeguard"


def _joinable(token: str) -> bool:
    """Could this word be part of a datum that continues into the next word?"""
    core = token.strip(_WORD_EDGES)
    if len(core) <= 4 or not core.isalpha():
        return True
    return _KEYWORD.search(core) is not None


def segment_ends(text: str, *, final: bool, max_segment: int = MAX_SEGMENT) -> list[int]:
    """Positions where complete segments of ``text`` end (``text`` starts a segment).

    A boundary is decided only from complete pieces, so more text never moves one: the
    segments of a prefix are the segments of the whole, up to the last end returned.
    """
    ends: list[int] = []
    pieces = _PIECES.findall(text)
    count = len(pieces)
    start = at = 0  # where the current segment and the current piece begin
    previous = ""  # the last complete word before the current whitespace
    joins = False  # whether ``previous`` is joinable
    key_block = key_end_seen = False
    for index, chunk in enumerate(pieces):
        at_end = at + len(chunk)
        last = index == count - 1
        if not chunk[0].isspace():
            if "-----BEGIN" in chunk:
                key_block = True
            elif key_block and "-----END" in chunk:
                key_end_seen = True
            previous, joins = chunk, _joinable(chunk)
            at = at_end
            continue
        if last and not final:
            break  # the whitespace may go on: its end (the cut) is not known yet
        at, length = at_end, at_end - start
        if not previous:
            continue  # leading whitespace belongs to the first segment
        if key_block:
            cut = (key_end_seen and "\n" in chunk) or length >= MAX_KEY_BLOCK
        elif not joins or "\n" in chunk or length >= max_segment:
            cut = True
        elif last or previous.endswith((":", "=")):
            cut = last  # an assignment's value belongs with its name
        elif index + 2 == count and not final:
            break  # the next word may go on: whether it joins is not known yet
        else:
            cut = not _joinable(pieces[index + 1])
        if cut:
            ends.append(at)
            start, previous = at, ""
            key_block = key_end_seen = False
    if final and len(text) > (ends[-1] if ends else 0):
        ends.append(len(text))
    return ends


class SafeguardOutputFilter:
    """One answer's filter (``OutputFilter``): stateful, not shared between answers."""

    def __init__(
        self,
        scanner: Scanner,
        *,
        canary: str | None = None,
        mask_personal: bool = True,
        max_segment: int = MAX_SEGMENT,
    ) -> None:
        self._scanner = scanner
        self._canary = canary
        self._mask_personal = mask_personal
        self._max_segment = max_segment
        self._pending = ""
        self._context = ""

    def feed(self, delta: str) -> str:
        # Only whitespace completes a word or a gap, so without it nothing new can be decided.
        undecidable = not self._pending[-1:].isspace() and _HAS_SPACE.search(delta) is None
        self._pending += delta
        return "" if undecidable else self._emit(final=False)

    def finish(self) -> str:
        return self._emit(final=True)

    def _emit(self, *, final: bool) -> str:
        text = self._pending
        ends = segment_ends(text, final=final, max_segment=self._max_segment)
        out: list[str] = []
        start = 0
        for end in ends:
            out.append(self._segment(text[start:end]))
            start = end
        self._pending = text[start:]
        return "".join(out)

    def _segment(self, segment: str) -> str:
        if self._canary is not None and self._canary in segment:
            raise OutputBlocked(
                "the answer repeated the system prompt's canary (system-prompt leakage)"
            )
        context = self._context
        self._context = (context + segment)[-CONTEXT:]
        if not _WORTH_SCANNING.search(segment):
            return segment
        spans = self._scanner.scan(context + segment, len(context))
        if not self._mask_personal:
            spans = [s for s in spans if s.category == "secret"]
        if not spans:
            return segment
        shifted = [
            Span(s.start - len(context), s.end - len(context), s.kind, s.category) for s in spans
        ]
        return apply(segment, shifted, None)


class OutputFilters:
    """The ``output_filter_factory`` hook: a fresh filter per answer, with its turn's canary."""

    def __init__(self, scanner: Scanner | None = None, *, mask_personal: bool = True) -> None:
        self._scanner = scanner or default_scanner()
        self._mask_personal = mask_personal

    def __call__(self, canary: str | None) -> OutputFilter:
        return SafeguardOutputFilter(
            self._scanner, canary=canary, mask_personal=self._mask_personal
        )
