"""The key providers' exception tree.

Every backend (files, PKCS#11, KMS) maps its own failures onto these, so callers (JWT, audit,
envelope encryption) handle one set of errors whatever the configuration. Messages name keys
and operations, never key material or PINs.
"""

from __future__ import annotations

from obsigen.errors import ObsigenError


class KeyProviderError(ObsigenError):
    """Base class: the provider could not do what was asked."""

    status = 500
    type_slug = "key-provider"
    title = "Key provider error"


class KeyConfigError(KeyProviderError):
    """The provider URI or its secrets are wrong (unknown scheme, missing PIN, no such token)."""

    type_slug = "key-provider-config"
    title = "Key provider misconfigured"


class KeyProviderUnavailable(KeyProviderError):
    """The HSM or KMS could not be reached or refused the session; retrying may help."""

    status = 503
    type_slug = "key-provider-unavailable"
    title = "Key provider unavailable"


class KeyNotFound(KeyProviderError):
    """No key of the right kind has this kid (also for malformed kids: nothing is looked up)."""

    status = 404
    type_slug = "key-not-found"
    title = "Key not found"


class KeyStateError(KeyProviderError):
    """The key exists but its state forbids the operation (retired, or verify-only for signing)."""

    status = 409
    type_slug = "key-state"
    title = "Key state forbids this operation"


class UnsupportedAlgorithm(KeyProviderError):
    """An algorithm outside the allow-list (ES256, RS256) or one the backend cannot do."""

    status = 422
    type_slug = "key-algorithm"
    title = "Unsupported key algorithm"


class UnwrapFailed(KeyProviderError):
    """A wrapped key did not authenticate: wrong KEK, wrong context, or tampered bytes."""

    status = 422
    type_slug = "unwrap-failed"
    title = "Wrapped key could not be unwrapped"
