"""Refusals of the limiter and the token budget: 429 problems that say when to come back."""

from __future__ import annotations

import math

from obsigen.errors import TooManyAttempts


def whole_seconds(seconds: float) -> int:
    # Rounded up: a client that waits the advertised time must find room.
    return max(0, math.ceil(seconds - 1e-9))


class RateLimited(TooManyAttempts):
    """A request limit refused the call. Carries the draft-IETF ``RateLimit-*`` numbers."""

    type_slug = "rate-limited"
    title = "Too many requests"

    def __init__(
        self,
        detail: str = "",
        *,
        retry_after_s: float,
        limit: int,
        remaining: int = 0,
        reset_after_s: float = 0.0,
        period_s: int = 0,
    ) -> None:
        super().__init__(detail, retry_after_s=max(1, whole_seconds(retry_after_s)))
        self.limit = limit
        self.remaining = remaining
        self.reset_after_s = reset_after_s
        self.period_s = period_s

    def headers(self) -> dict[str, str]:
        headers = {
            "Retry-After": str(self.retry_after_s),
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(whole_seconds(self.reset_after_s)),
        }
        if self.period_s:
            headers["RateLimit-Policy"] = f"{self.limit};w={self.period_s}"
        return headers


class TokenBudgetExceeded(RateLimited):
    """The inference token budget of the tenant or the user has no room for this request."""

    type_slug = "token-budget-exceeded"
    title = "Token budget exceeded"
