"""Settings: a TOML file overridden by ``OBSIGEN_<SECTION>__<KEY>`` environment variables.

Secrets never appear inline: fields that hold one take a reference (``env:NAME``,
``file:/path``) resolved by :mod:`obsigen.secretref` when the value is needed.
"""

from __future__ import annotations

import ipaddress
import os
import re
from contextvars import ContextVar
from datetime import date
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from obsigen.ratelimit.rates import parse_optional_rate
from obsigen.residency import normalise_region

CONFIG_ENV = "OBSIGEN_CONFIG"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PathsSettings(_Section):
    data_dir: Path = Path("./var")


class ServerSettings(_Section):
    """Listener, TLS and the proxies in front of it (docs/edge.md).

    ``tls_cert`` and ``tls_key`` name files (a path or a ``file:`` reference); set both to serve
    HTTPS. ``tls_key_password`` is a secret reference (``env:``/``file:``) for an encrypted key.
    Files are opened at start-up by :mod:`obsigen.web.tls`, not here, so commands that never
    listen (migrate, doctor) work on hosts that cannot read the key.
    """

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    tls_cert: str = ""
    tls_key: str = ""
    tls_key_password: str = ""
    # Peers (IPs or CIDRs) whose X-Forwarded-For/-Proto/-Host are believed; nobody else's are.
    trusted_proxies: list[str] = Field(default_factory=list)
    # Browsers pin HTTPS this long; below a year the HSTS preload lists and most audits refuse it.
    hsts_max_age_s: int = Field(default=31_536_000, ge=31_536_000, le=2 * 31_536_000)

    @field_validator("tls_cert", "tls_key")
    @classmethod
    def _file_reference(cls, value: str) -> str:
        scheme = _URI_SCHEME.match(value)
        if scheme and scheme.group(1).lower() != "file":
            raise ValueError(
                f"must be a file path or a file: reference, not a {scheme.group(1)}: reference"
            )
        if scheme and not value[len(scheme.group(0)) :]:
            raise ValueError("file: reference names no file")
        return value

    @field_validator("tls_key_password")
    @classmethod
    def _password_reference(cls, value: str) -> str:
        # Checked here so a pasted password is refused before it is used (or logged) anywhere.
        if value and not value.startswith(("env:", "file:")):
            raise ValueError("must be a secret reference (env:NAME or file:/path), not a value")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                # strict: "10.0.0.7/8" is a typo for a host or for a network, so it is refused.
                ipaddress.ip_network(entry.strip(), strict=True)
            except ValueError as exc:
                raise ValueError(
                    f"trusted_proxies: {entry!r} is not an IP address or CIDR: {exc}"
                ) from None
        return [entry.strip() for entry in value]

    @model_validator(mode="after")
    def _tls_pair(self) -> ServerSettings:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("server.tls_cert and server.tls_key must be set together")
        if self.tls_key_password and not self.tls_key:
            raise ValueError("server.tls_key_password is set but server.tls_key is not")
        return self

    @property
    def tls_enabled(self) -> bool:
        return bool(self.tls_cert and self.tls_key)


class StorageSettings(_Section):
    # Empty means the embedded default: SQLite under data_dir.
    database_url: str = ""
    redis_url: str = ""
    # Secret references (env:, file:, awssm:) read at each new connection; the URLs themselves
    # may not hold a password (docs/secrets.md). Empty: connect without one.
    database_password: str = ""
    redis_password: str = ""
    object_store: str = "local"
    region: str = ""
    # Per-store regions (docs/residency.md); empty: ``region``, else the S3 URI's region, else
    # "local" for embedded stores and loopback hosts.
    database_region: str = ""
    redis_region: str = ""
    object_store_region: str = ""

    @field_validator("region", "database_region", "redis_region", "object_store_region")
    @classmethod
    def _store_region(cls, value: str) -> str:
        return normalise_region(value) if value else value

    @field_validator("database_url")
    @classmethod
    def _known_driver(cls, value: str) -> str:
        if value and not value.startswith(("sqlite+aiosqlite://", "mysql+asyncmy://")):
            raise ValueError("database_url must use sqlite+aiosqlite:// or mysql+asyncmy://")
        return value


class KeysSettings(_Section):
    signing: str = "software"
    kek: str = "software"
    # Per-tenant data keys under the KEK seal message bodies and objects (docs/tenant-keys.md).
    tenant_encryption: bool = True
    # How long an unwrapped data key stays in this process's memory.
    dek_cache_ttl_s: float = Field(default=300.0, ge=0, le=3600)
    # Rows and objects written before encryption was on are read as plaintext; turn off once
    # none are left, and plaintext put in place of ciphertext is refused.
    read_plaintext: bool = True


class AuthSettings(_Section):
    """Sessions, tokens, login protection and MFA (docs/auth.md).

    An access token lives ``access_ttl_s``; its session ends after ``idle_timeout_s`` without a
    request, after ``session_max_s`` in any case, or on logout/revocation. A refresh token
    lives ``refresh_ttl_s`` and is single-use (rotation; a reused one ends the session).
    """

    issuer: str = "obsigen"
    audience: str = "obsigen-api"
    signing_alg: Literal["ES256", "RS256"] = "ES256"
    access_ttl_s: int = Field(default=900, ge=30, le=86400)
    refresh_ttl_s: int = Field(default=8 * 3600, ge=60, le=90 * 86400)
    idle_timeout_s: int = Field(default=3600, ge=60, le=30 * 86400)
    session_max_s: int = Field(default=12 * 3600, ge=60, le=90 * 86400)
    # Tolerance for clocks of other verifiers; bounded so a stolen token cannot live on.
    clock_skew_s: int = Field(default=30, ge=0, le=120)
    # Failed logins per account (and per source address) before a lockout.
    max_failures: int = Field(default=5, ge=1, le=100)
    failure_window_s: int = Field(default=900, ge=10)
    lockout_s: int = Field(default=900, ge=10)
    # API keys: the longest lifetime a new key may be given (keys never live unbounded).
    apikey_max_days: int = Field(default=365, ge=1, le=3650)
    # WebAuthn relying party: the site's registrable domain and the browser origin.
    webauthn_rp_id: str = "localhost"
    webauthn_rp_name: str = "Obsigen"
    webauthn_origins: list[str] = Field(default_factory=lambda: ["http://localhost:8000"])

    @model_validator(mode="after")
    def _coherent(self) -> AuthSettings:
        if self.access_ttl_s > self.session_max_s:
            raise ValueError("auth.access_ttl_s must not exceed auth.session_max_s")
        return self


class FederationSettings(_Section):
    """Single sign-on and provisioning (docs/federation.md). The identity providers themselves
    are tenant data, kept in the database and managed through ``/api/v1/idps``."""

    # The URL browsers reach this server at: OIDC redirect URIs, the SAML ACS URL and the SP
    # entity ID derive from it, so it must be what the IdP was told.
    public_url: str = "http://127.0.0.1:8000"
    # How long a sign-in may take between the redirect to the IdP and the way back: OIDC state
    # and nonce, SAML request ids live this long, and each is spent once.
    flow_ttl_s: int = Field(default=600, ge=60, le=3600)
    # Tolerance for the IdP's clock on iat/exp and NotBefore/NotOnOrAfter.
    clock_skew_s: int = Field(default=60, ge=0, le=300)
    # Outbound calls to IdPs (discovery, JWKS, token, userinfo).
    http_timeout_s: float = Field(default=10.0, gt=0, le=60)

    @field_validator("public_url")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")) or "?" in value or "#" in value:
            raise ValueError("federation.public_url must be an absolute http(s) URL")
        return value.rstrip("/")


class InferenceSettings(_Section):
    provider: Literal["local", "openai"] = "local"
    base_url: str = ""
    model: str = ""
    api_key: str = ""  # a secret reference, e.g. "env:MISTRAL_API_KEY"
    region: str = ""
    timeout_s: float = Field(default=120.0, gt=0)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    max_retries: int = Field(default=2, ge=0, le=5)
    max_tool_rounds: int = Field(default=4, ge=1, le=16)
    # "auto": offer the server's tools to capable models; the embedded 135M model gets them
    # only when a request names one in tool_choice (left to decide alone, it calls them at
    # random and triples the latency of every turn).
    server_tools: Literal["auto", "always", "never"] = "auto"
    max_tokens: int = Field(default=512, ge=1, le=32768)
    # Embedded model only.
    model_path: str = ""
    n_ctx: int = Field(default=4096, ge=256)
    n_threads: int = Field(default=0, ge=0)

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        return normalise_region(value) if value else value

    @property
    def offers_server_tools(self) -> bool:
        if self.server_tools == "auto":
            return self.provider != "local"
        return self.server_tools == "always"

    @model_validator(mode="after")
    def _openai_needs_url(self) -> InferenceSettings:
        if self.provider == "openai" and not self.base_url:
            raise ValueError("inference.base_url is required when provider = 'openai'")
        return self


class CorsSettings(_Section):
    """Cross-origin access for browsers (docs/edge.md). Empty ``allow_origins``: same-origin
    only, no CORS header is ever sent. Origins are exact ``scheme://host[:port]`` strings."""

    allow_origins: list[str] = Field(default_factory=list)
    allow_credentials: bool = False
    allow_methods: list[str] = Field(
        default_factory=lambda: ["GET", "POST", "PUT", "PATCH", "DELETE"]
    )
    allow_headers: list[str] = Field(default_factory=lambda: ["authorization", "content-type"])
    expose_headers: list[str] = Field(default_factory=list)
    max_age_s: int = Field(default=600, ge=0, le=86_400)

    @field_validator("allow_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        return [entry if entry == "*" else _normalise_origin(entry) for entry in value]

    @field_validator("allow_methods")
    @classmethod
    def _methods(cls, value: list[str]) -> list[str]:
        methods = [method.strip().upper() for method in value]
        for method in methods:
            if method not in _CORS_METHODS:
                raise ValueError(
                    f"cors.allow_methods: {method!r} is not one of {sorted(_CORS_METHODS)}"
                )
        return methods

    @field_validator("allow_headers", "expose_headers")
    @classmethod
    def _header_names(cls, value: list[str]) -> list[str]:
        names = [name.strip().lower() for name in value]
        for name in names:
            # "*" is a valid token but refused: the allow-list is meant to be read, and with
            # credentials browsers take "*" literally anyway.
            if name == "*" or not _HEADER_TOKEN.fullmatch(name):
                raise ValueError(f"cors: {name!r} is not a header name (no wildcards)")
        return names

    @model_validator(mode="after")
    def _no_wildcard_with_credentials(self) -> CorsSettings:
        if "*" in self.allow_origins and self.allow_credentials:
            raise ValueError(
                "cors.allow_origins = ['*'] with cors.allow_credentials = true is refused: "
                "any site could make credentialed requests; list the origins instead"
            )
        if "*" in self.allow_origins and len(self.allow_origins) > 1:
            raise ValueError("cors.allow_origins: '*' must stand alone")
        return self

    @property
    def allow_any_origin(self) -> bool:
        return self.allow_origins == ["*"]


_URI_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_HEADER_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")
_CORS_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _normalise_origin(origin: str) -> str:
    """``scheme://host[:port]`` as a browser serialises it in the Origin header, or ValueError."""
    problem = f"cors.allow_origins: {origin!r} is not an origin (scheme://host[:port], no path)"
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        raise ValueError(problem) from None
    if parts.scheme.lower() not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError(problem)
    extra = parts.path or parts.query or parts.fragment or origin.strip().endswith(("?", "#"))
    if extra or "@" in parts.netloc:
        raise ValueError(problem)
    scheme, host = parts.scheme.lower(), parts.hostname.lower()
    if "%" in host:
        raise ValueError(problem)  # a zone index names an interface of this host, not a site
    if ":" in host:
        try:
            host = f"[{ipaddress.IPv6Address(host).compressed}]"
        except ValueError:
            raise ValueError(problem) from None
    elif not _HOSTNAME.fullmatch(host):
        raise ValueError(problem)
    # Browsers leave the default port out of Origin, so a configured ":443" would never match.
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


class RateLimitSettings(_Section):
    """Request limits and inference token budgets (docs/ratelimit.md).

    A rate is ``"N/second|minute|hour|day"`` (``"N/M minutes"`` too) or ``"unlimited"``.
    ``default`` limits each principal (or client address, before authentication) per
    endpoint; ``endpoints`` overrides it per route template (``"/v1/chat/completions"``) or
    per method and template (``"POST /auth/login"``). ``principal`` and ``tenant`` limit all
    of a principal's or a tenant's requests together. Token budgets are per UTC-aligned
    period. With Redis unreachable, requests fail with 503 (``"closed"``) or pass unlimited
    (``"open"``); ``reads_on_store_down`` decides for GET/HEAD/OPTIONS (unset: the same).
    """

    default: str = "120/minute"
    endpoints: dict[str, str] = Field(default_factory=dict)
    principal: str = "600/minute"
    tenant: str = "6000/minute"
    token_budget_tenant: str = "10000000/day"  # noqa: S105 (a rate, not a secret)
    token_budget_user: str = "1000000/day"  # noqa: S105 (a rate, not a secret)
    on_store_down: Literal["closed", "open"] = "closed"
    reads_on_store_down: Literal["closed", "open"] | None = None

    @field_validator("default", "principal", "tenant", "token_budget_tenant", "token_budget_user")
    @classmethod
    def _rate(cls, value: str) -> str:
        parse_optional_rate(value)
        return value

    @field_validator("endpoints")
    @classmethod
    def _endpoint_rates(cls, value: dict[str, str]) -> dict[str, str]:
        for rate in value.values():
            parse_optional_rate(rate)
        return value


class ResidencySettings(_Section):
    """Where this deployment runs, and the transfers outside the EEA an operator allowed.

    ``allow_transfers`` entries read ``"TARGET: REGION - REASON"``, e.g.
    ``"inference: us - Azure OpenAI under the EU-US DPF, DPA signed 2026-03-01"``; TARGET is
    database, redis, object_store, inference or audit.<scheme> (docs/residency.md)."""

    region: str = "eea"
    allow_transfers: list[str] = Field(default_factory=list)

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        return normalise_region(value)

    @field_validator("allow_transfers")
    @classmethod
    def _entries(cls, value: list[str]) -> list[str]:
        from obsigen.residency_policy import parse_allowance

        for entry in value:
            parse_allowance(entry)
        return value


class AuditSettings(_Section):
    # The database (hash-chained, signed) is the record; the others are copies for SIEMs.
    sinks: list[str] = Field(default_factory=lambda: ["database", "file"])
    # A signed checkpoint every N events, or with the first event after T seconds.
    checkpoint_every: int = Field(default=100, ge=1)
    checkpoint_seconds: float = Field(default=60.0, gt=0)
    # Region of each remote sink by scheme ("otlp+http" = "de"); unset: storage.region.
    sink_regions: dict[str, str] = Field(default_factory=dict)

    @field_validator("sink_regions")
    @classmethod
    def _sink_regions(cls, value: dict[str, str]) -> dict[str, str]:
        return {scheme: normalise_region(region) for scheme, region in value.items()}


class SandboxSettings(_Section):
    """Code execution (docs/sandbox.md). ``pool_size`` sandboxes are made ahead; at most
    ``concurrency`` run at once, and a run that waits ``queue_timeout_s`` for a slot gets 503."""

    backend: Literal["auto", "gvisor", "bwrap", "kubernetes"] = "auto"
    pool_size: int = Field(default=2, ge=0, le=64)
    timeout_s: float = Field(default=30.0, gt=0, le=600)
    memory_mb: int = Field(default=512, ge=64)
    concurrency: int = Field(default=4, ge=1, le=256)
    queue_timeout_s: float = Field(default=5.0, ge=0, le=300)
    cpus: float = Field(default=1.0, gt=0, le=64)
    pids: int = Field(default=64, ge=8, le=4096)
    workspace_mb: int = Field(default=64, ge=1, le=65536)
    output_kb: int = Field(default=64, ge=1, le=65536)
    # backend = "kubernetes" (docs/deploy.md): one gVisor Pod per run in this namespace.
    k8s_namespace: str = "obsigen-sandbox"
    # The sandbox image (the Obsigen image carries the Debian Python runtime); required.
    k8s_image: str = ""
    k8s_runtime_class: str = "gvisor"
    # Empty: in-cluster (service account token and CA); else an explicit API URL (tests).
    k8s_api_url: str = ""


# The file types an upload may have (docs/files.md); detection is by content, not by name.
FILE_TYPES = ("pdf", "docx", "xlsx", "pptx", "txt", "md", "csv", "json", "png", "jpeg")


class FilesSettings(_Section):
    """Uploads (docs/files.md). ``allowed_types`` narrows ``FILE_TYPES``; the zip limits apply
    to every zip container (OOXML documents) before it is accepted."""

    max_upload_mb: int = Field(default=50, ge=1)
    # Tenant id -> its own limit in MB, in place of max_upload_mb.
    tenant_max_upload_mb: dict[str, int] = Field(default_factory=dict)
    allowed_types: list[str] = Field(default_factory=lambda: list(FILE_TYPES))
    zip_max_entries: int = Field(default=5000, ge=1)
    zip_max_uncompressed_mb: int = Field(default=512, ge=1)
    # Uncompressed / compressed, per entry; checked on entries of 100 KiB or more.
    zip_max_ratio: int = Field(default=100, ge=2)

    @field_validator("allowed_types")
    @classmethod
    def _known_types(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(FILE_TYPES))
        if unknown:
            raise ValueError(f"unknown file types {unknown}; known: {', '.join(FILE_TYPES)}")
        return value

    @field_validator("tenant_max_upload_mb")
    @classmethod
    def _positive_limits(cls, value: dict[str, int]) -> dict[str, int]:
        if any(mb < 1 for mb in value.values()):
            raise ValueError("tenant_max_upload_mb values must be at least 1")
        return value

    def max_upload_bytes(self, tenant_id: str) -> int:
        return self.tenant_max_upload_mb.get(tenant_id, self.max_upload_mb) * 1024 * 1024


class TenantSafeguards(_Section):
    """One tenant's own detection policy; unset fields follow ``[safeguards]``."""

    mode: Literal["block", "warn", "log-only"] | None = None
    threshold: float | None = Field(default=None, gt=0, le=1)
    indirect_threshold: float | None = Field(default=None, gt=0, le=1)


class SafeguardJudgeSettings(_Section):
    """The optional LLM judge: a chat model asked about texts whose score is in a grey zone.

    ``grey_high`` unset means the channel's threshold: the judge can then only add detections
    below it, never clear a text the other detectors flag.
    """

    enabled: bool = False
    model: str = ""  # empty: the first model the inference provider lists
    timeout_s: float = Field(default=5.0, gt=0, le=60)
    # 0.8: about 9 % of benign prompts and 12 % of attacks (the missed ones it could add) score
    # between it and the default threshold on the held-out data (docs/safeguards.md).
    grey_low: float = Field(default=0.8, gt=0, lt=1)
    grey_high: float | None = Field(default=None, gt=0, le=1)
    max_chars: int = Field(default=4000, ge=200, le=50_000)

    @model_validator(mode="after")
    def _zone(self) -> SafeguardJudgeSettings:
        if self.grey_high is not None and self.grey_high <= self.grey_low:
            raise ValueError("judge.grey_high must be above judge.grey_low")
        return self


class SafeguardsSettings(_Section):
    """Injection and jailbreak detection on prompts and on everything else the model reads.

    ``threshold`` applies to the user's prompt, ``indirect_threshold`` to text the user did not
    type (tool output, retrieved chunks, file text). The defaults are the thresholds measured
    on held-out sources at a 2 % false-positive rate (docs/safeguards.md). ``warn`` and
    ``log-only`` let everything through but audit the score and categories.
    """

    enabled: bool = True
    mode: Literal["block", "warn", "log-only"] = "block"
    threshold: float = Field(default=0.921, gt=0, le=1)
    indirect_threshold: float = Field(default=0.909, gt=0, le=1)
    # Deprecated: tenant admins set their policy through /api/v1/safeguards/policy. Applies
    # only to tenants with no stored policy (their version 0).
    tenant_overrides: dict[str, TenantSafeguards] = Field(default_factory=dict)
    # Bounds on what a tenant admin may store; a stored value outside them is clamped.
    tenant_modes: list[Literal["block", "warn", "log-only"]] = Field(
        default=["block", "warn", "log-only"], min_length=1
    )
    tenant_threshold_min: float = Field(default=0.3, gt=0, le=1)
    tenant_threshold_max: float = Field(default=0.99, gt=0, le=1)
    # How long a tenant's stored policy is reused before the database is asked again.
    policy_cache_s: float = Field(default=5.0, ge=0, le=300)
    judge: SafeguardJudgeSettings = Field(default_factory=SafeguardJudgeSettings)

    @model_validator(mode="after")
    def _bounds(self) -> SafeguardsSettings:
        if self.tenant_threshold_min > self.tenant_threshold_max:
            raise ValueError("tenant_threshold_min must not exceed tenant_threshold_max")
        return self


class DaysRange(_Section):
    """The periods, in days, a tenant's admins may choose for one kind of data."""

    min: int = Field(default=1, ge=1)
    max: int = Field(default=36_500, ge=1, le=36_500)

    @model_validator(mode="after")
    def _ordered(self) -> DaysRange:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max})")
        return self


class AuditDaysRange(DaysRange):
    # EU AI Act Art. 19: no tenant choice may keep logs under six months.
    min: int = Field(default=183, ge=183)


class RetentionTenantLimits(_Section):
    """What ``PUT /api/v1/retention`` accepts per kind (docs/retention.md); audit >= 183 days."""

    files_days: DaysRange = Field(default_factory=lambda: DaysRange(max=1095))
    artifacts_days: DaysRange = Field(default_factory=lambda: DaysRange(max=1095))
    conversations_days: DaysRange = Field(default_factory=lambda: DaysRange(max=1095))
    audit_days: AuditDaysRange = Field(default_factory=lambda: AuditDaysRange(max=3650))


class RetentionSettings(_Section):
    """How long data is kept (docs/retention.md); ``obsigen.retention`` enforces it."""

    files_days: int = Field(default=365, ge=1)
    artifacts_days: int = Field(default=90, ge=1)
    conversations_days: int = Field(default=365, ge=1)
    # EU AI Act Art. 19: logs kept at least six months.
    audit_days: int = Field(default=400, ge=183)
    # Keyed by tenant name or id: {"acme" = {files_days = 30}}. Only the keys above; a value
    # below a field's minimum is refused like the field itself (audit_days >= 183).
    tenant_overrides: dict[str, dict[str, int]] = Field(default_factory=dict)
    # The range each tenant's admins may choose from (stored per tenant; overrides above win).
    tenant_limits: RetentionTenantLimits = Field(default_factory=RetentionTenantLimits)
    # The server's own purge runs this often (fractions allowed); 0 leaves it to the CLI.
    interval_hours: float = Field(default=24, ge=0)
    # An upload still pending after this long was cut short by a crash.
    pending_upload_hours: int = Field(default=24, ge=1)
    # Rows per delete transaction: bounds lock time and memory on large backlogs.
    batch_size: int = Field(default=500, ge=1, le=10_000)

    @field_validator("tenant_overrides")
    @classmethod
    def _overrides(cls, value: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
        minimum = {"files_days": 1, "artifacts_days": 1, "conversations_days": 1, "audit_days": 183}
        for tenant, fields in value.items():
            for key, days in fields.items():
                if key not in minimum:
                    raise ValueError(
                        f"tenant_overrides[{tenant!r}]: unknown key {key!r}; "
                        f"use {', '.join(sorted(minimum))}"
                    )
                if days < minimum[key]:
                    raise ValueError(
                        f"tenant_overrides[{tenant!r}].{key} must be at least {minimum[key]}"
                    )
        return value


class RotationMaxAges(_Section):
    """Longest a credential may live, in days (docs/secrets.md). API keys: auth.apikey_max_days."""

    signing_key: int = Field(default=180, ge=1, le=3650)
    kek: int = Field(default=365, ge=1, le=3650)
    scim_token: int = Field(default=365, ge=1, le=3650)
    db_credential: int = Field(default=90, ge=1, le=3650)


class TasksSettings(_Section):
    """Background work on the task queue (docs/tasks.md)."""

    # auto: Redis streams when storage.redis_url is set (run `obsigen worker`), else in-process.
    broker: Literal["auto", "memory", "redis"] = "auto"
    # The Redis stream (and consumer group) the tasks travel on; one per deployment.
    queue: str = Field(default="obsigen:tasks", min_length=1, max_length=100)
    # Attempts before a task is dead-lettered; waits double from backoff_base_s to backoff_max_s.
    max_attempts: int = Field(default=5, ge=1, le=50)
    backoff_base_s: float = Field(default=2.0, ge=0)
    backoff_max_s: float = Field(default=300.0, ge=0)
    # A task a worker took but did not acknowledge (it died) goes to another worker after this.
    redelivery_after_s: float = Field(default=300.0, ge=1)
    # Tasks one worker runs at once.
    concurrency: int = Field(default=4, ge=1, le=256)
    # On SIGTERM, in-flight tasks get this long to finish; the rest are redelivered.
    shutdown_grace_s: float = Field(default=30.0, ge=0)
    # How long a delivery waits for another run of the same work (same file) to end.
    lock_wait_s: float = Field(default=60.0, ge=0)


class SecretsSettings(_Section):
    """Rotation ages (docs/secrets.md): past ``warn_fraction`` of its maximum a credential is
    reported; past the maximum a signing key, KEK or DB credential stops the server starting.
    The database cannot tell when its password changed: ``db_credential_rotated_at`` says."""

    max_age_days: RotationMaxAges = Field(default_factory=RotationMaxAges)
    warn_fraction: float = Field(default=0.8, gt=0, lt=1)
    db_credential_rotated_at: date | None = None


class MetricsSettings(_Section):
    """``GET /metrics`` for Prometheus (docs/metrics.md); off unless ``enabled``.

    Only peers inside ``allow_from`` (loopback by default) may read it: the real peer, or the
    client a proxy in ``server.trusted_proxies`` names, never an X-Forwarded-For from anyone
    else. With ``bearer_token`` (a secret reference) they must also send that token.
    """

    # Also when validated on its own: a refused token may be the pasted secret.
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    enabled: bool = False
    bearer_token: str = ""
    allow_from: list[str] = Field(default_factory=lambda: ["127.0.0.0/8", "::1/128"], min_length=1)

    @field_validator("bearer_token")
    @classmethod
    def _token_reference(cls, value: str) -> str:
        from obsigen.secretref import check_reference

        check_reference("metrics.bearer_token", value)
        return value

    @field_validator("allow_from")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry.strip(), strict=True)
            except ValueError as exc:
                raise ValueError(
                    f"metrics.allow_from: {entry!r} is not an IP address or CIDR: {exc}"
                ) from None
        return [entry.strip() for entry in value]

    @model_validator(mode="after")
    def _not_open_without_token(self) -> MetricsSettings:
        # Metrics describe the deployment (routes, load, sinks): a scraper anywhere on the
        # Internet must at least hold the token.
        if not self.bearer_token and any(
            ipaddress.ip_network(entry).prefixlen == 0 for entry in self.allow_from
        ):
            raise ValueError("metrics.allow_from admits every address: set metrics.bearer_token")
        return self


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="OBSIGEN_",
        env_nested_delimiter="__",
        extra="forbid",
        case_sensitive=False,
        # A refused value may be the secret someone pasted: errors name the field, not the input.
        hide_input_in_errors=True,
    )

    paths: PathsSettings = Field(default_factory=PathsSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    keys: KeysSettings = Field(default_factory=KeysSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    federation: FederationSettings = Field(default_factory=FederationSettings)
    inference: InferenceSettings = Field(default_factory=InferenceSettings)
    cors: CorsSettings = Field(default_factory=CorsSettings)
    ratelimit: RateLimitSettings = Field(default_factory=RateLimitSettings)
    residency: ResidencySettings = Field(default_factory=ResidencySettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    files: FilesSettings = Field(default_factory=FilesSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    safeguards: SafeguardsSettings = Field(default_factory=SafeguardsSettings)
    secrets: SecretsSettings = Field(default_factory=SecretsSettings)
    tasks: TasksSettings = Field(default_factory=TasksSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)

    @model_validator(mode="after")
    def _references_only(self) -> Settings:
        # Every section is known here, so one place sees every field that may hold a secret.
        from obsigen.secretref import refuse_inline_secrets

        refuse_inline_secrets(self)
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml_path = _config_file.get() or os.environ.get(CONFIG_ENV)
        if toml_path:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(toml_path)))
        return tuple(sources)

    @property
    def database_url(self) -> str:
        if self.storage.database_url:
            return self.storage.database_url
        return f"sqlite+aiosqlite:///{(self.paths.data_dir / 'obsigen.db').resolve()}"


# Lets load_settings name a file without changing the process environment.
_config_file: ContextVar[str | None] = ContextVar("obsigen_config_file", default=None)


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Load settings; an explicit ``config_file`` wins over ``OBSIGEN_CONFIG``."""
    if config_file is None:
        return Settings(**overrides)
    if not config_file.is_file():
        raise FileNotFoundError(f"config file not found: {config_file}")
    token = _config_file.set(str(config_file))
    try:
        return Settings(**overrides)
    finally:
        _config_file.reset(token)


def ensure_data_dir(settings: Settings) -> Path:
    """Create the embedded-store directory owner-only (0700) and return it."""
    data_dir = settings.paths.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    return data_dir
