"""Fixtures the security suites share with the unit suites."""

from tests.fakes.key_fixtures import hsm_token

__all__ = ["hsm_token"]
