"""Inference failures, mapped from each provider's own errors."""

from __future__ import annotations


class InferenceError(Exception):
    """The model could not produce an answer. ``reason`` is safe to show to the user."""

    def __init__(self, reason: str, *, retryable: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


class InferenceUnavailable(InferenceError):
    """The upstream could not be reached or answered 5xx/429."""


class InferenceTimeout(InferenceError):
    """The upstream did not answer in time."""


class InferenceBadResponse(InferenceError):
    """The upstream answered with something that is not a valid completion."""


class InferenceRejected(InferenceError):
    """The upstream refused the request (4xx other than 429): retrying will not help."""
