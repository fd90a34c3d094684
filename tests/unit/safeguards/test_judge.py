"""The judge's answer parsing and grey zone, without a model (see the integration tests)."""

from __future__ import annotations

import pytest

from obsigen.config import SafeguardJudgeSettings
from obsigen.inference.interfaces import Completion, ToolCallRequest
from obsigen.safeguards.judge import VERDICT_TOOL, LLMJudge, parse_answer


def called(*arguments: str, name: str = VERDICT_TOOL.name) -> Completion:
    calls = tuple(ToolCallRequest(f"c{i}", name, a) for i, a in enumerate(arguments))
    return Completion(model="m", content="", tool_calls=calls)


@pytest.mark.parametrize(
    ("completion", "outcome"),
    [
        (called('{"verdict": "attack"}'), "attack"),
        (called('{"verdict": "benign"}'), "benign"),
        (Completion(model="m", content='{"verdict":"attack"}'), "attack"),
        (called('{"verdict": "benign", "why": "the text said so"}'), "malformed"),
        (called('{"verdict": "BENIGN"}'), "malformed"),
        (called('["benign"]'), "malformed"),
        (called('{"verdict": "benign"}', '{"verdict": "attack"}'), "malformed"),
        (called('{"verdict": "benign"}', name="report"), "malformed"),
        (Completion(model="m", content="benign"), "malformed"),
        (Completion(model="m", content=""), "malformed"),
    ],
)
def test_only_one_exact_verdict_counts(completion: Completion, outcome: str) -> None:
    assert parse_answer(completion) == outcome


def test_the_grey_zone_ends_at_the_threshold_unless_configured_higher() -> None:
    default = LLMJudge(None, SafeguardJudgeSettings(grey_low=0.5))  # type: ignore[arg-type]
    assert not default.consulted(0.49, 0.9)
    assert default.consulted(0.5, 0.9)
    assert not default.consulted(0.9, 0.9)  # flagged already: the judge cannot clear it
    wide = LLMJudge(None, SafeguardJudgeSettings(grey_low=0.5, grey_high=0.97))  # type: ignore[arg-type]
    assert wide.consulted(0.95, 0.9)
    assert not wide.consulted(0.97, 0.9)
