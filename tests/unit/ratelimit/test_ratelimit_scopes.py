"""Which limits a request counts against, and which store-down policy applies to it."""

from __future__ import annotations

from obsigen.authz.principal import Principal
from obsigen.config import RateLimitSettings
from obsigen.ratelimit.gcra import MemoryRateLimiter
from obsigen.ratelimit.middleware import build_rate_limits, estimate_tokens
from obsigen.ratelimit.rates import Rate

ALICE = Principal(tenant_id="t1", kind="user", id="alice", roles=frozenset({"member"}))


def test_authenticated_requests_count_against_tenant_principal_and_endpoint() -> None:
    rl = build_rate_limits(
        RateLimitSettings(
            default="100/minute",
            principal="300/minute",
            tenant="1000/minute",
            endpoints={"/v1/chat/completions": "10/minute", "POST /auth/login": "5/minute"},
        ),
        None,
    )
    assert isinstance(rl.limiter, MemoryRateLimiter)
    scopes = rl.limits_for("post", "/v1/chat/completions", ALICE, "10.0.0.1")
    assert [(s.key, s.rate) for s in scopes] == [
        ("{t:t1}:tenant", Rate(1000, 60)),
        ("{t:t1}:p:user:alice", Rate(300, 60)),
        ("{t:t1}:e:POST:/v1/chat/completions:p:user:alice", Rate(10, 60)),
    ]
    # Before authentication the client address stands in for the principal.
    anonymous = rl.limits_for("POST", "/auth/login", None, "10.0.0.1")
    assert [(s.key, s.rate) for s in anonymous] == [
        ("{ip:10.0.0.1}:e:POST:/auth/login", Rate(5, 60))
    ]
    # "METHOD template" wins over the bare template; others get the default.
    assert rl.endpoint_rate("GET", "/auth/login") == Rate(100, 60)


def test_unlimited_scopes_are_left_out() -> None:
    rl = build_rate_limits(
        RateLimitSettings(tenant="unlimited", endpoints={"/healthz": "unlimited"}), None
    )
    assert [s.key for s in rl.limits_for("GET", "/v1/models", ALICE, None)] == [
        "{t:t1}:p:user:alice",
        "{t:t1}:e:GET:/v1/models:p:user:alice",
    ]
    assert rl.limits_for("GET", "/healthz", None, "10.0.0.2") == []


def test_reads_follow_their_own_store_down_policy_when_set() -> None:
    same = build_rate_limits(RateLimitSettings(on_store_down="closed"), None)
    assert same.policy_for("GET") == "closed"
    split = build_rate_limits(
        RateLimitSettings(on_store_down="closed", reads_on_store_down="open"), None
    )
    assert split.policy_for("GET") == "open"
    assert split.policy_for("head") == "open"
    assert split.policy_for("POST") == "closed"


def test_token_estimate_covers_prompt_and_completion() -> None:
    assert estimate_tokens([], 512) == 512
    assert estimate_tokens(["a" * 30, "b" * 3], 100) == (10 + 4) + (1 + 4) + 100
    # Multi-byte text estimates more tokens than its character count suggests.
    assert estimate_tokens(["日本語"], 0) == 3 + 4
