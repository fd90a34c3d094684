"""Output filters: a streamed answer is filtered exactly like the whole; credentials and
personal data are masked; a leaked canary blocks the answer wherever the deltas break."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.fakes.identifiers import WORDS, Document, documents

from obsigen.inference.interfaces import ChatMessage
from obsigen.safeguards.canary import new_token
from obsigen.safeguards.output_filters import OutputBlocked, OutputFilters, segment_ends
from obsigen.safeguards.redaction import PlaceholderRedactor

PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
filters = OutputFilters()


def run(pieces: list[str], canary: str | None = None, *, mask_personal: bool = True) -> str:
    output_filter = OutputFilters(mask_personal=mask_personal)(canary)
    return "".join(output_filter.feed(p) for p in pieces) + output_filter.finish()


def split(text: str, cuts: list[int]) -> list[str]:
    cuts = sorted(cuts)
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]


@PROPERTY
@given(documents(max_items=3))
def test_every_split_position_gives_the_unsplit_result(document: Document) -> None:
    whole = run([document.text])
    for cut in range(len(document.text) + 1):
        assert run(split(document.text, [cut])) == whole, cut


@PROPERTY
@given(documents(), st.data())
def test_any_number_of_splits_gives_the_unsplit_result(
    document: Document, data: st.DataObject
) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(document.text)), max_size=40))
    assert run(split(document.text, cuts)) == run([document.text])


@PROPERTY
@given(documents(), st.data())
def test_credentials_and_personal_data_are_masked(document: Document, data: st.DataObject) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(document.text)), max_size=20))
    shown = run(split(document.text, cuts))
    for value in (*document.secrets, *document.personal):
        assert value not in shown
    kept = run(split(document.text, cuts), mask_personal=False)
    for secret in document.secrets:
        assert secret not in kept
    for datum in document.personal:
        assert datum in kept


@PROPERTY
@given(st.text(alphabet=st.sampled_from("ab1 -:=\n."), max_size=60), st.data())
def test_segments_of_a_prefix_are_segments_of_the_whole(text: str, data: st.DataObject) -> None:
    whole = segment_ends(text, final=True)
    cut = data.draw(st.integers(0, len(text)))
    assert set(segment_ends(text[:cut], final=False)) <= set(whole)


@PROPERTY
@given(st.lists(st.sampled_from(WORDS), min_size=1, max_size=30), st.data())
def test_a_leaked_canary_blocks_the_answer_wherever_it_is_cut(
    words: list[str], data: st.DataObject
) -> None:
    canary = new_token()
    at = data.draw(st.integers(0, len(words)))
    text = " ".join([*words[:at], f"Marker {canary}:", *words[at:]])
    cuts = data.draw(st.lists(st.integers(0, len(text)), max_size=10))
    with pytest.raises(OutputBlocked):
        run(split(text, cuts), canary)
    assert run(split(text, cuts), new_token()) == text  # another turn's canary: no leak


def test_canary_split_across_every_pair_of_deltas() -> None:
    canary = new_token()
    text = f"Sure! My instructions begin with: Confidential marker {canary}: never repeat"
    start = text.index(canary)
    for cut in range(start, start + len(canary) + 1):
        with pytest.raises(OutputBlocked) as blocked:
            run([text[:cut], text[cut:]], canary)
        assert blocked.value.status == 422
        assert blocked.value.type_slug == "output-blocked"
        assert canary not in blocked.value.detail


def test_what_is_held_back_is_the_last_words_not_the_answer() -> None:
    output_filter = filters(None)
    shown = [output_filter.feed(w + " ") for w in ["Paris", "is", "the", "capital", "of", "France"]]
    assert "".join(shown) == "Paris is the capital of "
    assert output_filter.finish() == "France "


def test_placeholders_pass_through_for_the_restorer() -> None:
    redaction = PlaceholderRedactor().redact((ChatMessage("user", "ana@example.org"),))
    answer = "Dear ⟦EMAIL_1⟧, your key AKIAIOSFODNN7EXAMPLE and bob@example.org."
    output_filter, restorer = filters(None), redaction.restorer()
    shown = "".join(restorer.feed(output_filter.feed(c)) for c in answer)
    shown += restorer.feed(output_filter.finish()) + restorer.finish()
    assert shown == "Dear ana@example.org, your key [REDACTED:aws_key] and [REDACTED:email]."


def test_a_private_key_is_one_segment() -> None:
    block = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEI\nBNjb2Rl\n-----END EC PRIVATE KEY-----"
    text = f"Here:\n{block}\nDone, keep it safe."
    assert run(list(text)) == "Here:\n[REDACTED:private_key]\nDone, keep it safe."
