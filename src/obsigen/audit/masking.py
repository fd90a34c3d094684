"""Masks credentials in audit data before it is hashed, signed or written anywhere.

An audit log is read by more people than the secrets it would otherwise leak were meant for:
tokens, passwords, API keys and private keys that users paste into prompts, or that a caller
puts in ``data`` by mistake, are replaced before the event exists. Structure is kept (keys,
types), and our own API keys keep their public lookup handle so investigators can tell which
key leaked.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

MASK = "[MASKED]"

# Values under these keys are credentials whatever they look like (e.g. a six-digit TOTP).
_SENSITIVE_KEY = re.compile(
    r"(?:.*[_-])?(?:password|passwd|pwd|passphrase|secret|token|api_?key|authorization"
    r"|cookie|set_cookie|private_?key|otp|totp|otpauth_uri|credentials?)",
    re.IGNORECASE,
)

_Replacement = str | Callable[[re.Match[str]], str]

# Order matters: whole private keys and JWTs go before the generic key=value rule sees them.
_PATTERNS: tuple[tuple[re.Pattern[str], _Replacement], ...] = (
    (
        re.compile(
            r"-----BEGIN ((?:[A-Z0-9]+ )*)PRIVATE KEY-----.*?(?:-----END \1PRIVATE KEY-----|\Z)",
            re.DOTALL,
        ),
        "[MASKED PRIVATE KEY]",
    ),
    (
        re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"),
        "[MASKED JWT]",
    ),
    (re.compile(r"\bobs_[A-Za-z0-9_-]{8,}"), lambda match: _mask_api_key(match.group())),
    # A bearer credential; the lookahead spares prose such as "bearer instruments".
    (
        re.compile(r"(?i)\b(bearer)\s+(?=\S*[0-9_.~+/=-]|\S{20})[A-Za-z0-9._~+/=-]{8,}"),
        r"\1 " + MASK,
    ),
    (
        re.compile(r"(?i)\b(authorization\s*[:=]\s*)(?!\[MASKED|bearer )\S+(?:\s+\S+)?"),
        r"\1" + MASK,
    ),
    (
        re.compile(
            r"(?i)\b((?:client_|access_|refresh_|id_)?(?:password|passwd|pwd|passphrase|secret"
            r"|api[_-]?key|token))(\"?\s*[:=]\s*\"?)(?!\[MASKED)([^\s\"',;&]+)"
        ),
        r"\1\2" + MASK,
    ),
    # user:password@ in URLs.
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]+:)[^@\s/]+@"), r"\1" + MASK + "@"),
    # Well-known vendor key shapes.
    (re.compile(r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}"), "sk-" + MASK),
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), MASK),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}"), MASK),
    (re.compile(r"\bgithub_pat_[A-Za-z0-9_]{30,}"), MASK),
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"), MASK),
    (re.compile(r"\bAIza[0-9A-Za-z_-]{35}"), MASK),
)


_API_KEY = re.compile(r"obs_([a-z0-9]{16})_[A-Za-z0-9_-]+")


def _mask_api_key(key: str) -> str:
    # Our API keys are obs_<public lookup>_<secret>: the lookup names the key, safely.
    shaped = _API_KEY.fullmatch(key)
    return f"obs_{shaped.group(1)}_{MASK}" if shaped else f"obs_{MASK}"


def mask_text(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def mask_data(value: Any) -> Any:
    """A copy of ``value`` with credentials masked in every string, at any depth."""
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, Mapping):
        return {key: _mask_member(key, item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [mask_data(item) for item in value]
    return value


def _mask_member(key: Any, value: Any) -> Any:
    if (
        isinstance(key, str)
        and _SENSITIVE_KEY.fullmatch(key)
        and value is not None
        and not isinstance(value, bool)
    ):
        return MASK
    return mask_data(value)
