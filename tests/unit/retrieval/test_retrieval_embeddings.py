"""The shipped model gives unit vectors that put paraphrases together, with no download."""

from __future__ import annotations

import hashlib

import numpy as np

from obsigen.retrieval.embeddings import (
    DIMENSIONS,
    TOKENIZER_PATH,
    TOKENIZER_SHA256,
    from_bytes,
    shared_embedder,
    to_bytes,
)


def test_the_tokenizer_ships_in_the_package_with_its_notice() -> None:
    assert hashlib.sha256(TOKENIZER_PATH.read_bytes()).hexdigest() == TOKENIZER_SHA256
    notice = (TOKENIZER_PATH.parent / "NOTICE").read_text()
    assert "Apache" in notice
    assert TOKENIZER_SHA256 in notice


def test_vectors_have_the_model_shape_and_unit_length() -> None:
    vectors = shared_embedder().embed(["one", "two words", "a much longer sentence " * 80, ""])
    assert vectors.shape == (4, DIMENSIONS)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert shared_embedder().embed([]).shape == (0, DIMENSIONS)


def test_the_same_text_embeds_the_same_alone_or_in_a_batch() -> None:
    embedder = shared_embedder()
    alone = embedder.embed(["The invoice is due in thirty days."])
    batched = embedder.embed(["short", "The invoice is due in thirty days.", "x " * 100])
    np.testing.assert_allclose(alone[0], batched[1], atol=1e-4)


def test_a_paraphrase_ranks_above_unrelated_sentences() -> None:
    query = "How do I reset my password?"
    candidates = [
        "The quarterly revenue grew by twelve percent.",
        "To change a forgotten login password, use the recovery link.",
        "Bees collect nectar from flowers in spring.",
        "The train to Munich leaves at nine.",
    ]
    vectors = shared_embedder().embed([query, *candidates])
    similarity = vectors[1:] @ vectors[0]
    assert int(np.argmax(similarity)) == 1
    assert similarity[1] > similarity[0] + 0.2


async def test_the_async_entry_point_gives_the_same_vectors() -> None:
    embedder = shared_embedder()
    np.testing.assert_allclose(
        await embedder.aembed(["hello world"]), embedder.embed(["hello world"]), atol=1e-6
    )


def test_vectors_round_trip_through_bytes() -> None:
    vectors = shared_embedder().embed(["a", "b"])
    blobs = [to_bytes(v) for v in vectors]
    assert all(len(b) == DIMENSIONS * 4 for b in blobs)
    np.testing.assert_array_equal(from_bytes(blobs), vectors)
