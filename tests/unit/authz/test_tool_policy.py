"""The tool policy's decision function, every branch."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from obsigen.authz.permissions import Role
from obsigen.authz.tool_policy import BUILT_IN, PolicyDocument, evaluate

MEMBER = frozenset({Role.MEMBER})
ADMIN = frozenset({Role.ADMIN})


@pytest.mark.parametrize(
    ("sensitivity", "expected"),
    [("low", "allow"), ("medium", "allow"), ("high", "approval"), ("client", "allow")],
)
def test_built_in_defaults_follow_sensitivity(sensitivity: str, expected: str) -> None:
    decision = evaluate(BUILT_IN, 0, MEMBER, "anything", sensitivity)  # type: ignore[arg-type]
    assert decision.decision == expected
    assert decision.rule == f"default:{sensitivity}"
    assert decision.version == 0


def test_first_matching_rule_wins_and_roles_filter() -> None:
    document = PolicyDocument.model_validate(
        {
            "rules": [
                {"tools": ["send_email"], "roles": ["admin"], "decision": "allow"},
                {"tools": ["send_email"], "decision": "deny", "reason": "no mail"},
                {"tools": ["*"], "decision": "approval"},
            ],
            "approval_ttl_minutes": 5,
        }
    )

    admin = evaluate(document, 3, ADMIN, "send_email", "high")
    member = evaluate(document, 3, MEMBER, "send_email", "high")
    other = evaluate(document, 3, MEMBER, "calculator", "low")

    assert (admin.decision, admin.rule, admin.version) == ("allow", "rule[0]", 3)
    assert (member.decision, member.rule, member.reason) == ("deny", "rule[1]", "no mail")
    assert (other.decision, other.rule) == ("approval", "rule[2]")
    assert other.approval_ttl_s == 300


@pytest.mark.parametrize(
    "bad",
    [
        {"rules": [{"tools": [], "decision": "allow"}]},
        {"rules": [{"tools": ["x"], "decision": "maybe"}]},
        {"rules": [{"tools": ["../etc"], "decision": "allow"}]},
        {"rules": [{"tools": ["x"], "roles": ["Super User!"], "decision": "allow"}]},
        {"defaults": {"high": "allow", "extreme": "deny"}},
        {"approval_ttl_minutes": 0},
        {"unknown": 1},
    ],
)
def test_invalid_documents_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        PolicyDocument.model_validate(bad)
