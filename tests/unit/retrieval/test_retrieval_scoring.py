"""BM25 and the rank fusion that joins it to the embedding similarity."""

from __future__ import annotations

import numpy as np

from obsigen.retrieval.search import MIN_COSINE, bm25_scores, fuse, terms


def test_terms_drop_stopwords_and_case() -> None:
    assert terms("What is the SKU-4711 of the Widget?") == ["sku", "4711", "widget"]


def test_bm25_prefers_rare_terms_and_ignores_documents_without_them() -> None:
    docs = [terms(t) for t in ["red apple pie", "red car", "blue car red", "green tea"]]
    scores = bm25_scores(terms("apple red"), docs)
    assert scores[3] == 0
    assert int(np.argmax(scores)) == 0  # the only one with the rare "apple"
    assert bm25_scores([], docs).sum() == 0
    assert bm25_scores(["x"], []).shape == (0,)


def test_fusion_rewards_agreement_and_drops_what_neither_ranking_wants() -> None:
    cosine = np.array([0.9, 0.5, 0.1, 0.45])
    lexical = np.array([0.0, 3.0, 0.0, 1.0])
    ranked = fuse(cosine, lexical, top_k=10)
    order = [index for index, _ in ranked]
    # 1 is second by meaning and first by words: it wins; 2 is dissimilar and matches nothing.
    assert order[0] == 1
    assert 2 not in order
    assert cosine[2] < MIN_COSINE
    assert len(fuse(cosine, lexical, top_k=2)) == 2
