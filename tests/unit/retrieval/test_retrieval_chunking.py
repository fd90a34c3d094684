"""Chunks fit the model, overlap, and keep the locator of the section they came from."""

from __future__ import annotations

import itertools

import pytest

from obsigen.retrieval.chunking import OVERLAP_TOKENS, WINDOW_TOKENS, chunk_sections
from obsigen.retrieval.embeddings import plain_tokenizer
from obsigen.retrieval.extract import Section


def tokens(text: str) -> int:
    return len(plain_tokenizer().encode(text, add_special_tokens=False).ids)


def test_a_short_section_is_one_chunk_with_its_locator() -> None:
    chunks = chunk_sections([Section("page 1", "Short text."), Section("page 2", "More.")])
    assert [(c.seq, c.locator, c.text) for c in chunks] == [
        (0, "page 1", "Short text."),
        (1, "page 2", "More."),
    ]
    assert chunks[0].token_count == tokens("Short text.")


def test_a_long_section_becomes_overlapping_windows_that_fit_the_model() -> None:
    sentences = [f"Sentence number {i} talks about topic {i % 7}." for i in range(300)]
    chunks = chunk_sections([Section("slide 4", " ".join(sentences))])
    assert len(chunks) > 5
    assert {c.locator for c in chunks} == {"slide 4"}
    for chunk in chunks:
        assert chunk.token_count <= WINDOW_TOKENS
        assert tokens(chunk.text) <= WINDOW_TOKENS
    # Windows end at a sentence where one is near, and consecutive windows share text.
    assert all(c.text.endswith(".") for c in chunks[:-1])
    for first, second in itertools.pairwise(chunks):
        assert first.text[-40:] in second.text or second.text[:30] in first.text
    # Nothing is lost: every sentence is whole in some chunk.
    joined = "\n".join(c.text for c in chunks)
    assert all(sentence in joined for sentence in sentences)


def test_windows_without_any_break_still_advance() -> None:
    chunks = chunk_sections([Section("lines 1-1", "x" * 5000 + " " + "y" * 5000)])
    assert chunks
    assert all(c.token_count <= WINDOW_TOKENS for c in chunks)


def test_an_overlap_as_large_as_the_window_is_refused() -> None:
    with pytest.raises(ValueError, match="overlap"):
        chunk_sections([Section("p", "text")], window=10, overlap=10)
    assert OVERLAP_TOKENS < WINDOW_TOKENS
