"""The login's answers, the parts that need no database: one failure text, throttling as 429."""

from __future__ import annotations

import pytest

from obsigen.ephemeral.memory import MemoryStore
from obsigen.errors import TooManyAttempts, Unauthenticated
from obsigen.identity.login import LoginFailed, LoginThrottled, PasswordLogin, dummy_hash
from obsigen.identity.passwords import hash_password, verify_password


def test_login_failed_has_one_text_whatever_the_cause() -> None:
    first, second = LoginFailed(), LoginFailed()
    assert isinstance(first, Unauthenticated)
    assert (first.status, first.type_slug, first.detail) == (401, "login-failed", second.detail)
    # Nothing in the text hints at which part was wrong.
    assert "tenant, e-mail address or password" in first.detail


def test_login_throttled_is_a_429_with_retry_after() -> None:
    exc = LoginThrottled(42)
    assert isinstance(exc, TooManyAttempts)
    assert (exc.status, exc.type_slug, exc.retry_after_s) == (429, "login-throttled", 42)


def test_dummy_hash_costs_what_a_real_hash_costs() -> None:
    dummy, real = dummy_hash(), hash_password("a real password of some length")
    assert dummy.startswith("$argon2id$")
    assert dummy.split("$")[1:4] == real.split("$")[1:4]
    assert dummy_hash() is dummy  # computed once
    assert not verify_password(dummy, "")


@pytest.mark.parametrize(
    "limits",
    [
        {"max_failures": 0, "failure_window_s": 60, "lockout_s": 60},
        {"max_failures": 5, "failure_window_s": 0, "lockout_s": 60},
        {"max_failures": 5, "failure_window_s": 60, "lockout_s": 0},
        {"max_failures": 5, "failure_window_s": 60, "lockout_s": 60, "ip_limit_factor": 0},
    ],
)
def test_limits_must_be_positive(limits: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="positive"):
        PasswordLogin(MemoryStore(), **limits)


def test_the_address_limit_is_a_multiple_of_the_account_limit() -> None:
    login = PasswordLogin(MemoryStore(), max_failures=5, failure_window_s=60, lockout_s=60)
    assert login.ip_max_failures == 25
    assert (login.max_failures, login.failure_window_s, login.lockout_s) == (5, 60, 60)
