"""Credential recognisers: our precise patterns and detect-secrets' plugins."""

from __future__ import annotations

import base64
import json
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from obsigen.safeguards.recognizers import default_scanner

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ALNUM = string.ascii_letters + string.digits
UPPER_ALNUM = string.ascii_uppercase + string.digits


def secrets_in(text: str) -> list[tuple[str, str]]:
    return [
        (s.kind, text[s.start : s.end])
        for s in default_scanner().scan(text)
        if s.category == "secret"
    ]


def token(alphabet: str, size: int) -> st.SearchStrategy[str]:
    return st.text(alphabet, min_size=size, max_size=size)


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


@st.composite
def jwts(draw: st.DrawFn) -> str:
    header = _b64({"alg": draw(st.sampled_from(["RS256", "ES256", "HS256"])), "typ": "JWT"})
    claims = _b64({"sub": draw(token(ALNUM, 8)), "exp": draw(st.integers(0, 2**31))})
    signature = draw(token(ALNUM + "-_", 43))
    return f"{header}.{claims}.{signature}"


KEYS = {
    "aws_key": st.builds(
        lambda p, s: p + s, st.sampled_from(["AKIA", "ASIA"]), token(UPPER_ALNUM, 16)
    ),
    "github_token": st.builds(
        lambda p, s: p + s, st.sampled_from(["ghp_", "gho_", "ghs_"]), token(ALNUM, 36)
    ),
    "jwt": jwts(),
    "obsigen_api_key": st.builds(
        lambda a, b: f"obs_{a}_{b}",
        token(string.ascii_lowercase + string.digits, 16),
        token(ALNUM + "-_", 43),
    ),
    "api_key": st.builds(lambda s: f"sk-proj-{s}", token(ALNUM, 48)),
    "stripe_key": st.builds(lambda s: f"sk_live_{s}", token(ALNUM, 24)),
    "slack_token": st.builds(lambda s: f"xoxb-1234567890-{s}", token(ALNUM, 24)),
    "google_api_key": st.builds(lambda s: f"AIza{s}", token(ALNUM + "-_", 35)),
}


@pytest.mark.parametrize("kind", sorted(KEYS))
def test_keys_and_tokens_are_found_whole(kind: str) -> None:
    @PROPERTY
    @given(KEYS[kind], st.sampled_from(["{}", "key: {}", 'export TOKEN="{}"', "({}).", "{}\n"]))
    def check(secret: str, template: str) -> None:
        text = template.format(secret)
        found = secrets_in(text)
        assert any(value == secret for _, value in found), (text, found)
        assert all(value in secret for _, value in found), found

    check()


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("password=hunter2", "password", "hunter2"),
        ("DB_PASSWORD = 'c0rrect horse'", "password", "c0rrect horse"),
        ('{"password": "s3cr3t!"}', "password", "s3cr3t!"),
        ("Mein Passwort: Sommer2024!", "password", "Sommer2024!"),
        ("mot de passe : azerty123.", "password", "azerty123."),
        ("my password is hunter2.", "password", "hunter2."),
        ("Password: letmein\nUser: bob", "password", "letmein"),
        ("SMTP-PASSWORD=x", "password", "x"),
        ("contraseña=Madrid#1", "password", "Madrid#1"),
        ("Authorization: Bearer abcdefghijklmnopqrstuvwxyz012345", "bearer_token", None),
        (
            f"aws_secret_access_key = {'wJalrXUtnFEMI/K7MDENG/bPxRfiCY' + 'EXAMPLEKEY'}",
            "aws_secret_key",
            None,
        ),
        (f"SG.{'a' * 22}.{'B' * 43}", "sendgrid_api_key", None),
        ("https://alice:s3cretpw@git.example.com/r.git", "basic_auth_credentials", "s3cretpw"),
        ('api_key = "9f8e7d6c5b4a39281706f5e4d3c2b1a0"', "secret_keyword", None),
        ('token: "Zx81kQ0pLm2nB7vC4xR9tY6uW3eA5sD1"', "high_entropy_string", None),
    ],
)
def test_credentials_in_assignments_and_plugins(text: str, kind: str, value: str | None) -> None:
    found = secrets_in(text)
    assert any(k == kind and (value is None or v == value) for k, v in found), found


def test_private_key_block_is_one_secret_even_without_its_end() -> None:
    block = (
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7\nq4Zb\n-----END RSA PRIVATE KEY-----"
    )
    assert secrets_in(f"key:\n{block}\nthanks") == [("private_key", block)]
    cut = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ"
    assert secrets_in(cut) == [("private_key", cut)]
    # Inside JSON text the block stops at the string's end, so the JSON stays parseable.
    assert secrets_in(json.dumps({"k": cut}))[0][1] == cut.replace("\n", "\\n")


@pytest.mark.parametrize(
    "text",
    [
        "The password is required and must be changed every 90 days.",
        "Enter your password: then press enter.",
        "The key point is that tokens expire.",
        "See https://docs.example.org/api/v1/keys for details.",
        "Commit 3f786850e387550fdab836ed7e6dc881de23001b fixed it.",
        "Request id 550e8400-e29b-41d4-a716-446655440000",
        'print("hello world")',
        "Use ASIA as the region, and a KEY of 16 chars.",
    ],
)
def test_ordinary_text_is_not_a_credential(text: str) -> None:
    assert secrets_in(text) == []
