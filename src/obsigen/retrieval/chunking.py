"""Sections -> overlapping windows of word pieces, each keeping its section's locator.

Windows are counted in the embedding model's own tokens, so a chunk always fits the model
(longer text would be silently truncated and its end never found). Consecutive windows
overlap, so a sentence cut at a boundary is whole in one of them. A window ends at a sentence
or line break when there is one in its last quarter, which keeps excerpts readable.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from obsigen.retrieval.embeddings import plain_tokenizer
from obsigen.retrieval.extract import Section

# Well inside the model's window (MAX_TOKENS with [CLS] and [SEP]): shorter passages embed
# more sharply and make better excerpts to quote.
WINDOW_TOKENS = 200
OVERLAP_TOKENS = 40
_BREAK = re.compile(r"[.!?;:]\s|\n")


@dataclass(frozen=True, slots=True)
class Chunk:
    seq: int
    locator: str
    text: str
    token_count: int


def chunk_sections(
    sections: Iterable[Section],
    window: int = WINDOW_TOKENS,
    overlap: int = OVERLAP_TOKENS,
    tokenizer: Any = None,
) -> list[Chunk]:
    if not 0 <= overlap < window:
        raise ValueError("the overlap must be smaller than the window")
    tokenizer = tokenizer or plain_tokenizer()
    chunks: list[Chunk] = []
    for section in sections:
        for text, count in _windows(section.text, tokenizer, window, overlap):
            chunks.append(Chunk(len(chunks), section.locator, text, count))
    return chunks


def _windows(text: str, tokenizer: Any, window: int, overlap: int) -> Iterator[tuple[str, int]]:
    offsets: list[tuple[int, int]] = tokenizer.encode(text, add_special_tokens=False).offsets
    total = len(offsets)
    if total == 0:
        return
    if total <= window:
        yield text.strip(), total
        return
    start = 0
    while start < total:
        end = min(start + window, total)
        if end < total:
            end = _break_before(text, offsets, start, end, window)
        piece = text[offsets[start][0] : offsets[end - 1][1]].strip()
        if piece:
            yield piece, end - start
        if end >= total:
            return
        start = max(end - overlap, start + 1)


def _break_before(
    text: str, offsets: list[tuple[int, int]], start: int, end: int, window: int
) -> int:
    """The last token end in the window's final quarter that follows a sentence break."""
    floor = start + (window * 3) // 4
    for index in range(end - 1, floor, -1):
        following = text[offsets[index][1] : offsets[index][1] + 2]
        if _BREAK.match(following) or text[offsets[index][0] : offsets[index][1]] in ".!?":
            return index + 1
    return end
