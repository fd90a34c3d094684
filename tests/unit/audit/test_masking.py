"""Credentials never reach an audit record; everything else is left exactly as it was."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from obsigen.audit.events import EVENT_CLASSES, SEVERITY_IDS, AuditEvent, default_severity
from obsigen.audit.masking import MASK, mask_data, mask_text

API_KEY = "obs_0123456789abcdef_" + "A" * 20 + "b-c_" + "9" * 19
JWT = (
    "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ"
    ".eyJzdWIiOiJ1MSIsInRlbmFudCI6InQxIn0"
    ".c2lnbmF0dXJlLWJ5dGVzLWhlcmUtMTIzNDU2Nzg5MA"
)
PEM = (
    "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBcLwz4bC0O0Y3Q4i4dQ0yGx\nAoGBAMx=\n"
    "-----END EC PRIVATE KEY-----"
)
ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"my key is {API_KEY}, thanks", API_KEY),
        ("Authorization: Bearer 9f8e7d6c5b4a39281706f5e4d3c2b1a0", "9f8e7d6c5b4a3928"),
        ("curl -H 'Authorization: Basic dXNlcjpwYXNzd29yZA=='", "dXNlcjpwYXNzd29yZA"),
        (f"token {JWT}", JWT),
        (f"here:\n{PEM}\nend", "MHcCAQEEIBcLwz4b"),
        ("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIBoP (cut off", "MC4CAQAw"),
        ("password=hunter2 and more", "hunter2"),
        ('{"password": "correct horse"}', "correct"),
        ("export API_KEY=abc123def456", "abc123def456"),
        ("client_secret: s3cr3t-value", "s3cr3t-value"),
        ("postgres://admin:pa55word@db.example.eu/prod", "pa55word"),
        ("OPENAI_KEY sk-proj-abcdefghijklmnopqrstuvwxyz012345", "abcdefghijklmnopqrst"),
        ("aws AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE"),
        ("ghp_" + "a1" * 18, "a1a1a1a1a1a1a1a1"),
        ("xoxb-1234567890-abcdefghij", "1234567890-abcdefghij"),
    ],
)
def test_credentials_in_text_are_masked(text: str, secret: str) -> None:
    masked = mask_text(text)
    assert secret not in masked
    assert "[MASKED" in masked


def test_our_api_keys_keep_their_public_lookup_handle() -> None:
    assert mask_text(API_KEY) == "obs_0123456789abcdef_" + MASK


@pytest.mark.parametrize(
    "text",
    [
        "Hello, how do I bake bread?",
        "The bearer of bad news; bearer instruments are regulated.",
        "Use 512 tokens at most; the token limit is 4096.",
        "sha256:" + "ab" * 32,
        'line one\nline two\r\n\u2028 "quoted" {json} Grüße 数据',
        "Basic questions about authorization in our app",
        "observability_dashboard and obs_ prefix",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert mask_text(text) == text


def test_values_under_credential_keys_are_masked_whatever_they_look_like() -> None:
    data = {
        "password": "x",
        "totp": 123456,
        "refresh_token": "abc",
        "headers": {"Authorization": "anything", "Accept": "json"},
        "prompt_tokens": 12,
        "completion_tokens": 7,
        "max_tokens": 100,
        "secret_hash": "kept: it is a hash",
        "api_key": None,
        "items": [{"client_secret": "s"}, "Bearer abcdefgh12345678"],
    }
    assert mask_data(data) == {
        "password": MASK,
        "totp": MASK,
        "refresh_token": MASK,
        "headers": {"Authorization": MASK, "Accept": "json"},
        "prompt_tokens": 12,
        "completion_tokens": 7,
        "max_tokens": 100,
        "secret_hash": "kept: it is a hash",
        "api_key": None,
        "items": [{"client_secret": MASK}, "Bearer " + MASK],
    }


def test_masking_does_not_change_the_callers_data() -> None:
    data = {"content": f"key {API_KEY}"}
    mask_data(data)
    assert data == {"content": f"key {API_KEY}"}


def test_events_are_masked_when_made() -> None:
    event = AuditEvent(
        type="chat.prompt",
        tenant_id="t1",
        actor={"kind": "apikey", "id": "k1"},
        outcome="success",
        data={"content": f"use {API_KEY} with Bearer {JWT}", "nested": {"password": "p"}},
    )
    text = str(event.to_json())
    assert API_KEY not in text
    assert JWT not in text
    assert "'password': 'p'" not in text


def test_severity_and_source_address() -> None:
    ok = AuditEvent(
        type="tool.call",
        tenant_id="t1",
        actor={"kind": "user", "id": "u1"},
        outcome="success",
        data={"source_address": "192.0.2.7"},
    ).to_json()
    assert (ok["severity"], ok["severity_id"]) == ("informational", 1)
    assert ok["src_endpoint"] == {"ip": "192.0.2.7"}
    failed_login = AuditEvent(
        type="auth.login",
        tenant_id="t1",
        actor={"kind": "user", "id": "u1"},
        outcome="failure",
        source_address="198.51.100.1",
        target={"kind": "user", "id": "u1"},
    ).to_json()
    assert (failed_login["severity"], failed_login["severity_id"]) == ("medium", 3)
    assert failed_login["src_endpoint"] == {"ip": "198.51.100.1"}
    assert failed_login["target"] == {"kind": "user", "id": "u1"}
    assert default_severity("audit.verify", "failure") == "critical"
    assert default_severity("admin.change", "success") == "low"
    explicit = AuditEvent(
        type="chat.failed", tenant_id="t", actor={}, outcome="failure", severity="high"
    )
    assert explicit.to_json()["severity_id"] == SEVERITY_IDS["high"]


def test_unknown_types_and_naive_times_are_refused() -> None:
    from datetime import datetime

    with pytest.raises(ValueError, match="unknown audit event type"):
        AuditEvent(type="chat.typo", tenant_id="t", actor={}, outcome="success")
    with pytest.raises(ValueError, match="timezone-aware"):
        AuditEvent(
            type="chat.prompt",
            tenant_id="t",
            actor={},
            outcome="success",
            time=datetime(2026, 1, 1),  # naive on purpose
        )


def test_docs_list_every_event_type() -> None:
    documented = set(re.findall(r"^\| `([a-z_]+\.[a-z_]+)` \|", _docs(), re.MULTILINE))
    assert documented >= set(EVENT_CLASSES)


def _docs() -> str:
    return (ROOT / "docs" / "audit.md").read_text(encoding="utf-8")
