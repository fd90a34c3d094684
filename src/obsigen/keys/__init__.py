"""Key providers: signing keys and key-encryption keys that never leave their backend."""

from obsigen.keys.errors import (
    KeyConfigError,
    KeyNotFound,
    KeyProviderError,
    KeyProviderUnavailable,
    KeyStateError,
    UnsupportedAlgorithm,
    UnwrapFailed,
)
from obsigen.keys.factory import make_key_provider
from obsigen.keys.interfaces import DataKey, KeyInfo, KeyProvider, KeyState, SigningAlg

__all__ = [
    "DataKey",
    "KeyConfigError",
    "KeyInfo",
    "KeyNotFound",
    "KeyProvider",
    "KeyProviderError",
    "KeyProviderUnavailable",
    "KeyState",
    "KeyStateError",
    "SigningAlg",
    "UnsupportedAlgorithm",
    "UnwrapFailed",
    "make_key_provider",
]
