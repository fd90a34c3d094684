"""Resolve secret references (``env:NAME``, ``file:/path``) to the secret they name.

Settings hold references, never the secret itself, so a config file or an environment dump
can be shared without leaking anything. Other schemes (``vault:``, ``pkcs11:``, ``awskms:``)
belong to the key providers, which never hand the secret out.
"""

from __future__ import annotations

import os
from pathlib import Path

_KEY_PROVIDER_SCHEMES = frozenset({"vault", "pkcs11", "awskms"})


class SecretRefError(ValueError):
    """A reference that cannot be resolved. The message names the reference, never a value."""


def resolve_secret(ref: str) -> str:
    """Return the secret behind ``ref``; an empty reference means "no secret" and gives ""."""
    if not ref:
        return ""
    scheme, sep, target = ref.partition(":")
    if not sep:
        raise ValueError("secrets must be references (env:NAME or file:/path), not values")
    if scheme == "env":
        return _from_env(target)
    if scheme == "file":
        return _from_file(target)
    if scheme in _KEY_PROVIDER_SCHEMES:
        raise SecretRefError(
            f"{scheme}: references are used by the key providers, not resolved here"
        )
    # A value that merely contains a colon must not slip through as "unknown scheme".
    raise ValueError("secrets must be references (env:NAME or file:/path), not values")


def _from_env(name: str) -> str:
    if not name:
        raise SecretRefError("env: reference names no variable")
    try:
        return os.environ[name]
    except KeyError:
        raise SecretRefError(f"environment variable {name} is not set") from None


def _from_file(path: str) -> str:
    if not path:
        raise SecretRefError("file: reference names no file")
    try:
        # A trailing newline is an editor artefact, not part of the secret.
        return Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise SecretRefError(f"cannot read secret file {path}: {exc.strerror}") from None
