"""Resolve secret references to the secret they name, and refuse configs that hold secrets.

Settings hold references, never the secret itself, so a config file or an environment dump
can be shared without leaking anything (docs/secrets.md). Resolvable here:

- ``env:NAME``: an environment variable;
- ``file:/path``: a regular file readable by its owner only (0600 or stricter);
- ``awssm:SECRET-ID-OR-ARN[#json-field][?region=..&endpoint_url=..&ttl=..]``: AWS Secrets
  Manager (:mod:`obsigen.secrets.aws`).

``vault:`` is refused: this build has no Vault client. ``pkcs11:`` and ``awskms:`` name key
providers, which never hand a secret out, so they are not resolved here either.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlsplit

if TYPE_CHECKING:
    from obsigen.config import Settings

REFERENCE_SCHEMES = ("env", "file", "awssm")
_KEY_PROVIDER_SCHEMES = frozenset({"pkcs11", "awskms"})
_NOT_A_REFERENCE = (
    "secrets must be references (env:NAME, file:/path or awssm:SECRET-ID), not values"
)
VAULT_UNSUPPORTED = (
    "vault: references are not supported in this build (no Vault client is installed); "
    "use env:, file: or awssm:"
)
# Parameters of the ``[keys]`` URIs and the ``storage.object_store`` URI that carry secrets.
_KEY_URI_SECRETS = ("master_key", "pin", "access_key_id", "secret_access_key")
_OBJECT_STORE_SECRETS = ("access_key_id", "secret_access_key")


class SecretRefError(ValueError):
    """A reference that cannot be resolved. The message names the reference, never a value."""


def is_reference(value: str) -> bool:
    """True for a reference this build can resolve (``env:``, ``file:``, ``awssm:``)."""
    scheme, sep, target = value.partition(":")
    return bool(sep) and scheme in REFERENCE_SCHEMES and bool(target)


def check_reference(field: str, value: str) -> None:
    """ValueError naming ``field`` unless ``value`` is empty or a resolvable reference.

    The message never contains ``value``: when it is refused, it is probably the secret.
    """
    if not value or is_reference(value):
        return
    if value.partition(":")[0] == "vault":
        raise ValueError(f"{field}: {VAULT_UNSUPPORTED}")
    raise ValueError(
        f"{field} must be a secret reference (env:NAME, file:/path or awssm:SECRET-ID), not a value"
    )


def secret_fields(settings: Settings) -> Iterator[tuple[str, str]]:
    """Every (field, value) of ``settings`` that must hold a reference.

    Audit sink credentials are checked when the sinks are built at start-up
    (:mod:`obsigen.audit.sink_factory`), before anything is sent.
    """
    yield "inference.api_key", settings.inference.api_key
    yield "storage.database_password", settings.storage.database_password
    yield "storage.redis_password", settings.storage.redis_password
    yield "server.tls_key_password", settings.server.tls_key_password
    for section, uri in (("keys.signing", settings.keys.signing), ("keys.kek", settings.keys.kek)):
        for name, value in _semicolon_params(uri):
            if name in _KEY_URI_SECRETS:
                yield f"{section} {name}", value
    store = settings.storage.object_store
    if "://" in store:
        for name, value in parse_qsl(urlsplit(store).query, keep_blank_values=True):
            if name in _OBJECT_STORE_SECRETS:
                yield f"storage.object_store {name}", value


def url_password_problem(field: str, url: str) -> str:
    """Why ``url`` may not be used as ``field`` (it holds a password), or ""."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return ""  # malformed URLs are the driver's to refuse, with its own message
    if not password:
        return ""
    # Never the value: only where it was found and where it belongs instead.
    password_field = field.removesuffix("_url") + "_password"
    return (
        f"{field} holds a password: remove it from the URL and set {password_field} to a "
        "secret reference (env:NAME, file:/path or awssm:SECRET-ID)"
    )


def refuse_inline_secrets(settings: Settings) -> None:
    """ValueError listing every secret field that holds a value instead of a reference."""
    problems: list[str] = []
    for field, url in (
        ("storage.database_url", settings.storage.database_url),
        ("storage.redis_url", settings.storage.redis_url),
    ):
        problem = url_password_problem(field, url)
        if problem:
            problems.append(problem)
    for field, value in secret_fields(settings):
        try:
            check_reference(field, value)
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        raise ValueError("; ".join(problems))


def _semicolon_params(uri: str) -> Iterator[tuple[str, str]]:
    # The [keys] URI form (scheme:k=v;k=v); malformed URIs are the key factory's to refuse.
    _, sep, rest = uri.strip().partition(":")
    if not sep:
        return
    for part in rest.split(";"):
        name, eq, value = part.partition("=")
        if eq:
            yield name.strip(), value.strip()


def resolve_secret(ref: str) -> str:
    """Return the secret behind ``ref``; an empty reference means "no secret" and gives ""."""
    if not ref:
        return ""
    scheme, sep, target = ref.partition(":")
    if not sep:
        raise ValueError(_NOT_A_REFERENCE)
    if scheme == "env":
        return _from_env(target)
    if scheme == "file":
        return _from_file(target)
    if scheme == "awssm":
        from obsigen.secrets.aws import resolve_awssm

        return resolve_awssm(target)
    if scheme == "vault":
        raise SecretRefError(VAULT_UNSUPPORTED)
    if scheme in _KEY_PROVIDER_SCHEMES:
        raise SecretRefError(
            f"{scheme}: references are used by the key providers, not resolved here"
        )
    # A value that merely contains a colon must not slip through as "unknown scheme".
    raise ValueError(_NOT_A_REFERENCE)


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
        # Checked on the open descriptor, so the file cannot be swapped between check and read.
        # Symlinks are followed: mounted secrets (Kubernetes) are links to the real file.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | os.O_NONBLOCK)
    except OSError as exc:
        raise SecretRefError(f"cannot read secret file {path}: {exc.strerror}") from None
    problem = _unsafe_file(path, os.fstat(fd))
    if problem:
        os.close(fd)
        raise SecretRefError(problem)
    with os.fdopen(fd, "rb") as handle:
        try:
            raw = handle.read()
        except OSError as exc:
            raise SecretRefError(f"cannot read secret file {path}: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretRefError(f"secret file {path} is not UTF-8 text") from None
    # A trailing newline is an editor artefact, not part of the secret.
    return text.rstrip("\r\n")


def _unsafe_file(path: str, info: os.stat_result) -> str:
    if not stat.S_ISREG(info.st_mode):
        return f"secret file {path} is not a regular file"
    if info.st_mode & 0o077:
        return (
            f"secret file {path} is open to group or others (mode "
            f"{stat.S_IMODE(info.st_mode):04o}): make it owner-only (chmod 600)"
        )
    return ""
