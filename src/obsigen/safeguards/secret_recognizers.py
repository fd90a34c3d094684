"""Credentials: precise patterns for the common keys and tokens, plus detect-secrets' plugins.

detect-secrets is used in-process through its plugin classes (their compiled patterns and
entropy measure), never its CLI, and never its ``verify`` methods: those call the vendors'
APIs with the candidate secret, which is exactly the leak we are here to prevent.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from detect_secrets.plugins.artifactory import ArtifactoryDetector
from detect_secrets.plugins.aws import AWSKeyDetector
from detect_secrets.plugins.azure_storage_key import AzureStorageKeyDetector
from detect_secrets.plugins.base import RegexBasedDetector
from detect_secrets.plugins.basic_auth import BasicAuthDetector
from detect_secrets.plugins.cloudant import CloudantDetector
from detect_secrets.plugins.discord import DiscordBotTokenDetector
from detect_secrets.plugins.github_token import GitHubTokenDetector
from detect_secrets.plugins.gitlab_token import GitLabTokenDetector
from detect_secrets.plugins.high_entropy_strings import (
    Base64HighEntropyString,
    HexHighEntropyString,
    HighEntropyStringsPlugin,
)
from detect_secrets.plugins.ibm_cloud_iam import IbmCloudIamDetector
from detect_secrets.plugins.ibm_cos_hmac import IbmCosHmacDetector
from detect_secrets.plugins.keyword import QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP
from detect_secrets.plugins.mailchimp import MailchimpDetector
from detect_secrets.plugins.npm import NpmDetector
from detect_secrets.plugins.openai import OpenAIDetector
from detect_secrets.plugins.pypi_token import PypiTokenDetector
from detect_secrets.plugins.sendgrid import SendGridDetector
from detect_secrets.plugins.slack import SlackDetector
from detect_secrets.plugins.softlayer import SoftlayerDetector
from detect_secrets.plugins.square_oauth import SquareOAuthDetector
from detect_secrets.plugins.stripe import StripeDetector
from detect_secrets.plugins.telegram_token import TelegramBotTokenDetector
from detect_secrets.plugins.twilio import TwilioKeyDetector

from obsigen.safeguards.recognizers import Recognizer, Span

# Words for "password" in the languages we serve; an assignment to one of them is a credential.
_CREDENTIAL_WORDS = (
    r"password|passwort|passwd|passphrase|pwd|kennwort|mot de passe|contrase[ñn]a|senha"
    r"|parola d'ordine|wachtwoord|has[łl]o|l[öo]senord|salasana|adgangskode|heslo|jelsz[óo]"
)
# "password", "db_password", "SMTP-PASSWORD", optionally quoted as a JSON or YAML key.
_CREDENTIAL_KEY = rf"(?i)(?<![A-Za-z0-9])(?:[A-Za-z0-9]+[_-])*(?:{_CREDENTIAL_WORDS})[\"']?"
_QUOTED = r"\"([^\"\n]{1,128})\"|'([^'\n]{1,128})'"
# A bare value runs to whitespace, a quote, a comma or a semicolon; a trailing full stop is
# masked with it (masking one character too many is the safe side).
_BARE = r"[^\s\"',;⟦\[][^\s\"',;]{0,127}"
_STRONG = r"(?=[^\s\"',;]*[\d!@#$%^&*_+=?~-])"
_LINE_END = r"(?=[ \t]*(?:\r?\n|\Z))"

# Lower-case literals of which a text must hold one for the password patterns to match.
_CREDENTIAL_NEEDLES = (
    "pass", "pwd", "kennwort", "contrase", "senha", "parola", "wachtwoord", "hasło", "haslo",
    "senord", "salasana", "adgangskode", "heslo", "jelsz",
)  # fmt: skip

# (kind, pattern, needles). A pattern with groups names the secret in its first non-empty
# group; the rest is context (a keyword) that stays readable. A pattern only runs on a text
# holding one of its needles (lower-case literals; none: always runs), which is what keeps
# scanning plain prose cheap.
_PATTERNS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    # A key block without its END line (pasted in part) is still a key: up to the next quote
    # (the end of a JSON string) or the end of the text.
    (
        "private_key",
        r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----"
        r"(?:[^\"]*?-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----|[^\"]*)",
        ("-----begin",),
    ),
    (
        "aws_key",
        r"(?<![A-Za-z0-9])(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}(?![A-Za-z0-9])",
        ("akia", "asia", "abia", "acca", "a3t"),
    ),
    (
        "aws_secret_key",
        r"(?i)aws[\w.-]{0,20}?(?:secret|private)[\w.-]{0,20}?[\"']?\s*[:=]\s*[\"']?"
        r"([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+])",
        ("aws",),
    ),
    (
        "github_token",
        r"(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{36,251}|github_pat_[A-Za-z0-9_]{22,255})"
        r"(?![A-Za-z0-9_])",
        ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
    ),
    (
        "gitlab_token",
        r"(?<![\w-])gl(?:pat|dt|ft|rt|soat|cbt)-[A-Za-z0-9_-]{20,64}(?![\w-])",
        ("glpat-", "gldt-", "glft-", "glrt-", "glsoat-", "glcbt-"),
    ),
    ("slack_token", r"(?<![\w-])xox[abposr]-[A-Za-z0-9-]{10,250}", ("xox",)),
    (
        "stripe_key",
        r"(?<![\w])[sr]k_(?:live|test)_[A-Za-z0-9]{16,255}(?![\w])",
        ("k_live_", "k_test_"),
    ),
    (
        "api_key",
        r"(?<![\w-])sk-(?:proj-|svcacct-|admin-|ant-)?[A-Za-z0-9_-]{32,250}(?![\w-])",
        ("sk-",),
    ),
    ("google_api_key", r"(?<![\w-])AIza[0-9A-Za-z_-]{35}(?![\w-])", ("aiza",)),
    ("jwt", r"(?<![\w-])eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*", ("eyj",)),
    ("obsigen_api_key", r"(?<![\w])obs_[A-Za-z0-9]{16}_[A-Za-z0-9_-]{43}(?![\w-])", ("obs_",)),
    ("bearer_token", r"(?i)(?<![\w])bearer\s+([A-Za-z0-9._~+/-]{20,}=*)", ("bearer",)),
    # Code and configuration: db_password = ..., "password": "...", PASSWORD=... (any value).
    (
        "password",
        rf"{_CREDENTIAL_KEY}\s*(?::=|=>|=)\s*(?:{_QUOTED}|({_BARE}))",
        _CREDENTIAL_NEEDLES,
    ),
    # Prose: "Passwort: Sommer2024!" A bare value needs a digit or symbol, or to end its line
    # ("Password: letmein" on a credentials sheet), or "enter your password: then..." would match.
    (
        "password",
        rf"{_CREDENTIAL_KEY}\s*:\s*(?:{_QUOTED}|({_STRONG}{_BARE})|({_BARE}){_LINE_END})",
        _CREDENTIAL_NEEDLES,
    ),
    # "my password is hunter2": likewise only a value with a digit or symbol.
    (
        "password",
        rf"{_CREDENTIAL_KEY}\s+(?:is|ist|est|es|è|jest|är|er|on|je)\s+(?:{_QUOTED}|({_STRONG}{_BARE}))",
        _CREDENTIAL_NEEDLES,
    ),
)


@dataclass(frozen=True, slots=True)
class _Pattern:
    kind: str
    regex: re.Pattern[str]
    needles: re.Pattern[str] | None

    def spans(self, text: str, pos: int, lowered: str) -> Iterator[Span]:
        if self.needles is not None and not self.needles.search(lowered):
            return
        for match in self.regex.finditer(text, pos):
            group = next((g for g in range(1, (self.regex.groups or 0) + 1) if match.group(g)), 0)
            start, end = match.span(group)
            if end > start:
                yield Span(start, end, self.kind, "secret")


class SecretPatterns:
    """Our own patterns: the formats people paste most, matched with their exact extent."""

    def __init__(self) -> None:
        self._patterns = tuple(_Pattern(k, re.compile(p), _any_of(n)) for k, p, n in _PATTERNS)

    def find(self, text: str, pos: int = 0) -> Iterator[Span]:
        lowered = text[pos:].lower()
        for pattern in self._patterns:
            yield from pattern.spans(text, pos, lowered)


# Every pattern of these plugins needs a run of 24+ word characters (the secret itself).
_LONG_TOKEN_PLUGINS = (CloudantDetector, IbmCloudIamDetector, IbmCosHmacDetector, SoftlayerDetector)
_LONG_TOKEN = re.compile(r"[\w-]{24}")
# Lower-case literals one of which every pattern of the plugin needs (see the plugin sources).
_PLUGIN_NEEDLES: dict[type[RegexBasedDetector], tuple[str, ...]] = {
    ArtifactoryDetector: ("akc", "ap"),
    AWSKeyDetector: ("akia", "asia", "abia", "acca", "a3t", "aws"),
    AzureStorageKeyDetector: ("accountkey=",),
    BasicAuthDetector: ("://",),
    GitHubTokenDetector: ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"),
    GitLabTokenDetector: ("gl", "gr1348941"),
    MailchimpDetector: ("-us",),
    NpmDetector: ("_authtoken",),
    OpenAIDetector: ("t3blbkfj",),
    PypiTokenDetector: ("pypi-",),
    SendGridDetector: ("sg.",),
    SlackDetector: ("xox", "hooks.slack.com"),
    SquareOAuthDetector: ("sq0csp-",),
    StripeDetector: ("k_live_",),
    TelegramBotTokenDetector: (":",),
    TwilioKeyDetector: ("ac", "sk"),
}
_KEYWORD_NEEDLES = ("key", "pass", "pwd", "secret", "contrase")
_QUOTES = ("'", '"', "`")

# Plugins whose pattern captures the secret after a keyword; the others' match is the secret.
_KEYWORD_PLUGINS = (
    AWSKeyDetector,
    BasicAuthDetector,
    CloudantDetector,
    IbmCloudIamDetector,
    IbmCosHmacDetector,
    NpmDetector,
    SoftlayerDetector,
)
_REGEX_PLUGINS: tuple[type[RegexBasedDetector], ...] = (
    ArtifactoryDetector,
    AWSKeyDetector,
    AzureStorageKeyDetector,
    BasicAuthDetector,
    CloudantDetector,
    DiscordBotTokenDetector,
    GitHubTokenDetector,
    GitLabTokenDetector,
    IbmCloudIamDetector,
    IbmCosHmacDetector,
    MailchimpDetector,
    NpmDetector,
    OpenAIDetector,
    PypiTokenDetector,
    SendGridDetector,
    SlackDetector,
    SoftlayerDetector,
    SquareOAuthDetector,
    StripeDetector,
    TelegramBotTokenDetector,
    TwilioKeyDetector,
)
# Left out on purpose: IPPublicDetector (an address is not a credential), JwtTokenDetector and
# PrivateKeyDetector (our patterns find the whole token / key block, theirs only a prefix).

# Quoted random strings shorter than this are ids and hashes far more often than secrets.
MIN_ENTROPY_STRING = 20
_TRIM = " \t\r\n\"'=:`"


@dataclass(frozen=True, slots=True)
class _Plugin:
    kind: str
    patterns: tuple[tuple[re.Pattern[str], int], ...]
    needles: re.Pattern[str] | None
    long_token: bool = False
    # detect-secrets applies its keyword rules line by line; so do we, and only to lines with a
    # keyword and a quote (the rules are slow, and most text has neither).
    quoted_lines: bool = False


def _any_of(needles: tuple[str, ...]) -> re.Pattern[str] | None:
    """One search for all of a pattern's needles (faster than a loop of ``in`` tests)."""
    return re.compile("|".join(map(re.escape, needles))) if needles else None


def _slug(secret_type: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", secret_type.lower()).strip("_")


class DetectSecretsPlugins:
    """detect-secrets' regex plugins, its quoted-keyword rules and its entropy plugins."""

    def __init__(self) -> None:
        self._plugins: list[_Plugin] = []
        for plugin_class in _REGEX_PLUGINS:
            plugin = plugin_class()
            keyworded = plugin_class in _KEYWORD_PLUGINS
            patterns = tuple(
                (regex, 1 if keyworded and regex.groups else 0) for regex in plugin.denylist
            )
            self._plugins.append(
                _Plugin(
                    _slug(plugin.secret_type),
                    patterns,
                    _any_of(_PLUGIN_NEEDLES.get(plugin_class, ())),
                    long_token=plugin_class in _LONG_TOKEN_PLUGINS,
                )
            )
        keyword = tuple(QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP.items())
        self._plugins.append(
            _Plugin("secret_keyword", keyword, _any_of(_KEYWORD_NEEDLES), quoted_lines=True)
        )
        self._entropy: tuple[HighEntropyStringsPlugin, ...] = (
            Base64HighEntropyString(),
            HexHighEntropyString(),
        )

    def find(self, text: str, pos: int = 0) -> Iterator[Span]:
        lowered = text[pos:].lower()
        quoted = any(quote in lowered for quote in _QUOTES)
        long_token = _LONG_TOKEN.search(text, pos) is not None
        for plugin in self._plugins:
            if plugin.needles is not None and not plugin.needles.search(lowered):
                continue
            if (plugin.long_token and not long_token) or (plugin.quoted_lines and not quoted):
                continue
            ranges = _quoted_lines(text, pos, plugin.needles) if plugin.quoted_lines else None
            for regex, group in plugin.patterns:
                for first, last in ranges or ((pos, len(text)),):
                    for match in regex.finditer(text, first, last):
                        start, end = match.span(group)
                        yield from _trimmed(text, start, end, plugin.kind)
        if not quoted:
            return
        for entropy in self._entropy:
            for match in entropy.regex.finditer(text, pos):
                value = match.group(2)
                if (
                    len(value) >= MIN_ENTROPY_STRING
                    and entropy.calculate_shannon_entropy(value) > entropy.entropy_limit
                ):
                    yield Span(match.start(2), match.end(2), "high_entropy_string", "secret")


def _quoted_lines(text: str, pos: int, needles: re.Pattern[str] | None) -> list[tuple[int, int]]:
    ranges = []
    start = pos
    for line in text[pos:].splitlines(keepends=True):
        end = start + len(line)
        lowered = line.lower()
        if any(q in line for q in _QUOTES) and (needles is None or needles.search(lowered)):
            ranges.append((start, end))
        start = end
    return ranges


def _trimmed(text: str, start: int, end: int, kind: str) -> Iterator[Span]:
    # Some plugin patterns include the delimiter around the secret (a space, a quote, "=").
    while start < end and text[start] in _TRIM:
        start += 1
    while end > start and text[end - 1] in _TRIM:
        end -= 1
    if end - start >= 4:
        yield Span(start, end, kind, "secret")


def secret_recognizers() -> tuple[Recognizer, ...]:
    return (SecretPatterns(), DetectSecretsPlugins())
