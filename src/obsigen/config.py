"""Settings: a TOML file overridden by ``OBSIGEN_<SECTION>__<KEY>`` environment variables.

Secrets never appear inline: fields that hold one take a reference (``env:NAME``,
``file:/path``) resolved by :mod:`obsigen.secretref` when the value is needed.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from obsigen.residency import normalise_region

CONFIG_ENV = "OBSIGEN_CONFIG"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PathsSettings(_Section):
    data_dir: Path = Path("./var")


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    tls_cert: str = ""
    tls_key: str = ""
    trusted_proxies: list[str] = Field(default_factory=list)


class StorageSettings(_Section):
    # Empty means the embedded default: SQLite under data_dir.
    database_url: str = ""
    redis_url: str = ""
    object_store: str = "local"
    region: str = ""

    @field_validator("database_url")
    @classmethod
    def _known_driver(cls, value: str) -> str:
        if value and not value.startswith(("sqlite+aiosqlite://", "mysql+asyncmy://")):
            raise ValueError("database_url must use sqlite+aiosqlite:// or mysql+asyncmy://")
        return value


class KeysSettings(_Section):
    signing: str = "software"
    kek: str = "software"


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
    allow_origins: list[str] = Field(default_factory=list)


class RateLimitSettings(_Section):
    default: str = "120/minute"
    endpoints: dict[str, str] = Field(default_factory=dict)
    on_store_down: Literal["closed", "open"] = "closed"


class ResidencySettings(_Section):
    region: str = "eea"
    allow_transfers: list[str] = Field(default_factory=list)


class AuditSettings(_Section):
    # The database (hash-chained, signed) is the record; the others are copies for SIEMs.
    sinks: list[str] = Field(default_factory=lambda: ["database", "file"])
    # A signed checkpoint every N events, or with the first event after T seconds.
    checkpoint_every: int = Field(default=100, ge=1)
    checkpoint_seconds: float = Field(default=60.0, gt=0)


class SandboxSettings(_Section):
    """Code execution (docs/sandbox.md). ``pool_size`` sandboxes are made ahead; at most
    ``concurrency`` run at once, and a run that waits ``queue_timeout_s`` for a slot gets 503."""

    backend: Literal["auto", "gvisor", "bwrap"] = "auto"
    pool_size: int = Field(default=2, ge=0, le=64)
    timeout_s: float = Field(default=30.0, gt=0, le=600)
    memory_mb: int = Field(default=512, ge=64)
    concurrency: int = Field(default=4, ge=1, le=256)
    queue_timeout_s: float = Field(default=5.0, ge=0, le=300)
    cpus: float = Field(default=1.0, gt=0, le=64)
    pids: int = Field(default=64, ge=8, le=4096)
    workspace_mb: int = Field(default=64, ge=1, le=65536)
    output_kb: int = Field(default=64, ge=1, le=65536)


class FilesSettings(_Section):
    max_upload_mb: int = Field(default=50, ge=1)
    allowed_types: list[str] = Field(default_factory=list)


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


class RetentionSettings(_Section):
    files_days: int = Field(default=365, ge=1)
    artifacts_days: int = Field(default=90, ge=1)
    conversations_days: int = Field(default=365, ge=1)
    # EU AI Act Art. 19: logs kept at least six months.
    audit_days: int = Field(default=400, ge=183)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="OBSIGEN_",
        env_nested_delimiter="__",
        extra="forbid",
        case_sensitive=False,
    )

    paths: PathsSettings = Field(default_factory=PathsSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    keys: KeysSettings = Field(default_factory=KeysSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    inference: InferenceSettings = Field(default_factory=InferenceSettings)
    cors: CorsSettings = Field(default_factory=CorsSettings)
    ratelimit: RateLimitSettings = Field(default_factory=RateLimitSettings)
    residency: ResidencySettings = Field(default_factory=ResidencySettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    files: FilesSettings = Field(default_factory=FilesSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    safeguards: SafeguardsSettings = Field(default_factory=SafeguardsSettings)

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
