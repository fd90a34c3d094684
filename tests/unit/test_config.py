"""Settings: defaults, a TOML file, environment overrides, and what is refused."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from obsigen.config import CONFIG_ENV, Settings, ensure_data_dir, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No OBSIGEN_* variable from the caller's shell leaks in, and none leaks out."""
    for name in list(os.environ):
        if name.upper().startswith("OBSIGEN_"):
            monkeypatch.delenv(name)
    # setenv first so that undo also removes what load_settings() writes into os.environ.
    monkeypatch.setenv(CONFIG_ENV, "")
    monkeypatch.delenv(CONFIG_ENV)
    monkeypatch.chdir(tmp_path)


def write_toml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults() -> None:
    settings = Settings()
    assert settings.paths.data_dir == Path("./var")
    assert (settings.server.host, settings.server.port) == ("127.0.0.1", 8000)
    assert settings.server.trusted_proxies == []
    assert settings.storage.database_url == ""
    assert settings.storage.redis_url == ""
    assert settings.storage.object_store == "local"
    assert settings.keys.signing == settings.keys.kek == "software"
    assert settings.inference.provider == "local"
    assert settings.cors.allow_origins == []
    assert settings.ratelimit.default == "120/minute"
    assert settings.ratelimit.on_store_down == "closed"
    assert settings.residency.region == "eea"
    assert settings.residency.allow_transfers == []
    assert settings.audit.sinks == ["database", "file"]
    assert settings.sandbox.backend == "auto"
    assert settings.files.max_upload_mb == 50
    assert settings.retention.audit_days >= 183


def test_database_url_defaults_to_sqlite_under_data_dir(tmp_path: Path) -> None:
    settings = Settings()
    expected = (tmp_path / "var" / "obsigen.db").resolve()
    assert settings.database_url == f"sqlite+aiosqlite:///{expected}"


def test_database_url_follows_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OBSIGEN_PATHS__DATA_DIR", str(tmp_path / "elsewhere"))
    settings = Settings()
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path / 'elsewhere' / 'obsigen.db'}"


def test_configured_database_url_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "mysql+asyncmy://obsigen@127.0.0.1:3306/obsigen"
    monkeypatch.setenv("OBSIGEN_STORAGE__DATABASE_URL", url)
    assert Settings().database_url == url


def test_toml_file_from_environment_is_read(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = write_toml(
        tmp_path / "obsigen.toml",
        f"""
[paths]
data_dir = "{tmp_path / "data"}"

[server]
host = "0.0.0.0"
port = 9000
trusted_proxies = ["10.0.0.1"]

[inference]
provider = "openai"
base_url = "https://api.mistral.ai/v1"
api_key = "env:MISTRAL_API_KEY"
region = "fr"

[ratelimit]
endpoints = {{ "/v1/chat/completions" = "30/minute" }}

[retention]
audit_days = 183
""",
    )
    monkeypatch.setenv(CONFIG_ENV, str(config))
    settings = Settings()
    assert settings.paths.data_dir == tmp_path / "data"
    assert (settings.server.host, settings.server.port) == ("0.0.0.0", 9000)
    assert settings.server.trusted_proxies == ["10.0.0.1"]
    assert settings.inference.provider == "openai"
    assert settings.inference.base_url == "https://api.mistral.ai/v1"
    assert settings.inference.api_key == "env:MISTRAL_API_KEY"
    assert settings.inference.region == "fr"
    assert settings.ratelimit.endpoints == {"/v1/chat/completions": "30/minute"}
    assert settings.retention.audit_days == 183
    # Sections the file does not name keep their defaults.
    assert settings.audit.sinks == ["database", "file"]


def test_environment_overrides_toml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = write_toml(
        tmp_path / "obsigen.toml",
        '[server]\nhost = "0.0.0.0"\nport = 9000\n\n[paths]\ndata_dir = "/from/toml"\n',
    )
    monkeypatch.setenv(CONFIG_ENV, str(config))
    monkeypatch.setenv("OBSIGEN_SERVER__PORT", "8001")
    monkeypatch.setenv("OBSIGEN_PATHS__DATA_DIR", str(tmp_path / "var-test"))
    settings = Settings()
    assert settings.server.port == 8001
    assert settings.paths.data_dir == tmp_path / "var-test"
    # A key the environment does not name still comes from the file.
    assert settings.server.host == "0.0.0.0"


def test_environment_variable_names_are_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("obsigen_server__port", "8123")
    assert Settings().server.port == 8123


def test_environment_lists_are_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OBSIGEN_CORS__ALLOW_ORIGINS", '["https://chat.example.eu"]')
    monkeypatch.setenv("OBSIGEN_AUDIT__SINKS", '["file", "syslog+tls://siem.example.eu:6514"]')
    settings = Settings()
    assert settings.cors.allow_origins == ["https://chat.example.eu"]
    assert settings.audit.sinks == ["file", "syslog+tls://siem.example.eu:6514"]


def test_load_settings_explicit_file_wins_over_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(
        CONFIG_ENV, str(write_toml(tmp_path / "env.toml", "[server]\nport = 1111\n"))
    )
    explicit = write_toml(tmp_path / "explicit.toml", "[server]\nport = 2222\n")
    assert load_settings(explicit).server.port == 2222


def test_load_settings_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_settings(tmp_path / "absent.toml")


@pytest.mark.parametrize(
    ("toml", "where"),
    [
        ("[server]\nbogus = 1\n", "server.bogus"),
        ("[nope]\nx = 1\n", "nope"),
        ("[storage]\ndatabase_uri = 'sqlite+aiosqlite:///x.db'\n", "storage.database_uri"),
    ],
)
def test_unknown_keys_in_toml_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, toml: str, where: str
) -> None:
    monkeypatch.setenv(CONFIG_ENV, str(write_toml(tmp_path / "bad.toml", toml)))
    with pytest.raises(ValidationError, match="Extra inputs are not permitted") as caught:
        Settings()
    assert [".".join(map(str, e["loc"])) for e in caught.value.errors()] == [where]


def test_unknown_key_in_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OBSIGEN_SERVER__PROT", "8001")
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        Settings()


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+asyncpg://u@127.0.0.1/obsigen",
        "sqlite:///./var/obsigen.db",  # sync driver
        "mysql+pymysql://u@127.0.0.1/obsigen",  # sync driver
        "mysql://u@127.0.0.1/obsigen",
    ],
)
def test_unsupported_database_driver_is_refused(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("OBSIGEN_STORAGE__DATABASE_URL", url)
    with pytest.raises(ValidationError, match="database_url must use"):
        Settings()


@pytest.mark.parametrize(
    "url", ["sqlite+aiosqlite:///tmp/x.db", "mysql+asyncmy://u@127.0.0.1:3306/obsigen"]
)
def test_supported_database_drivers(url: str) -> None:
    assert Settings(storage={"database_url": url}).storage.database_url == url


def test_openai_provider_needs_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OBSIGEN_INFERENCE__PROVIDER", "openai")
    with pytest.raises(ValidationError, match=r"inference\.base_url is required"):
        Settings()
    monkeypatch.setenv("OBSIGEN_INFERENCE__BASE_URL", "http://127.0.0.1:8080/v1")
    assert Settings().inference.base_url == "http://127.0.0.1:8080/v1"


def test_unknown_inference_provider_is_refused() -> None:
    with pytest.raises(ValidationError, match="provider"):
        Settings(inference={"provider": "anthropic", "base_url": "https://x"})


def test_inference_region_is_normalised() -> None:
    assert Settings(inference={"region": "eu-central-1"}).inference.region == "de"
    assert Settings(inference={"region": " FR "}).inference.region == "fr"


def test_inference_region_junk_is_refused() -> None:
    with pytest.raises(ValidationError, match="unknown region"):
        Settings(inference={"region": "mars-1"})


def test_audit_retention_below_six_months_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OBSIGEN_RETENTION__AUDIT_DAYS", "182")
    with pytest.raises(ValidationError, match="audit_days"):
        Settings()
    monkeypatch.setenv("OBSIGEN_RETENTION__AUDIT_DAYS", "183")
    assert Settings().retention.audit_days == 183


@pytest.mark.parametrize("port", ["0", "65536", "http"])
def test_bad_port_is_refused(monkeypatch: pytest.MonkeyPatch, port: str) -> None:
    monkeypatch.setenv("OBSIGEN_SERVER__PORT", port)
    with pytest.raises(ValidationError, match="port"):
        Settings()


def test_rate_limit_store_down_behaviour_is_closed_or_open() -> None:
    with pytest.raises(ValidationError, match="on_store_down"):
        Settings(ratelimit={"on_store_down": "ignore"})


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_ensure_data_dir_creates_owner_only(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "var"
    settings = Settings(paths={"data_dir": target})
    assert ensure_data_dir(settings) == target
    assert target.is_dir()
    assert _mode(target) == 0o700


def test_ensure_data_dir_tightens_an_existing_dir(tmp_path: Path) -> None:
    target = tmp_path / "var"
    target.mkdir()
    target.chmod(0o755)
    (target / "keep").write_text("data")
    ensure_data_dir(Settings(paths={"data_dir": target}))
    assert _mode(target) == 0o700
    assert (target / "keep").read_text() == "data"
