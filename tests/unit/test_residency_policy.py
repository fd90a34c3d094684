"""EEA residency at start-up: refusals with clear messages, allowances that name region and
reason, and the egress allow-list of outbound clients."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from obsigen.config import Settings
from obsigen.doctor_data import data_map
from obsigen.egress import EgressAllowList, EgressDenied
from obsigen.residency_policy import ResidencyRefused, enforce_residency, parse_allowance
from obsigen.services import build_services

OBSIGEN = str(Path(sys.executable).parent / "obsigen")
US_INFERENCE = {"provider": "openai", "base_url": "https://api.example.com/v1", "region": "us"}


def settings(tmp_path: Path, **sections: Any) -> Settings:
    return Settings.model_validate({"paths": {"data_dir": tmp_path}, **sections})


def test_embedded_defaults_are_in_the_eea(tmp_path: Path) -> None:
    assert enforce_residency(settings(tmp_path)) == []


@pytest.mark.parametrize(
    ("sections", "target"),
    [
        ({"inference": US_INFERENCE}, "inference"),
        ({"storage": {"database_url": "mysql+asyncmy://u@db.example.com/o", "region": "us"}},
         "database"),
        ({"storage": {"object_store": "s3://bucket?region=us-east-1"}}, "object_store"),
        ({"storage": {"redis_url": "redis://cache.example.com:6379/0", "redis_region": "us"}},
         "redis"),
        ({"audit": {"sinks": ["database", "otlp+http://siem.example.com:4318"],
                    "sink_regions": {"otlp+http": "us"}}}, "audit.otlp+http"),
    ],
)  # fmt: skip
def test_non_eea_store_without_an_allowance_is_refused(
    tmp_path: Path, sections: dict[str, Any], target: str
) -> None:
    with pytest.raises(ResidencyRefused) as refused:
        enforce_residency(settings(tmp_path, **sections))
    message = str(refused.value)
    assert target in message
    assert "outside the EEA" in message
    assert f"'{target}: us - " in message  # says exactly what to add
    with pytest.raises(ResidencyRefused):
        build_services(settings(tmp_path, **sections))


def test_remote_store_without_a_region_is_refused(tmp_path: Path) -> None:
    unknown = {"database_url": "mysql+asyncmy://u@db.example.com/o"}
    with pytest.raises(ResidencyRefused, match="declares no region"):
        enforce_residency(settings(tmp_path, storage=unknown))
    # Loopback is this host: the deployment's own region.
    local = {"database_url": "mysql+asyncmy://u@127.0.0.1/o"}
    assert enforce_residency(settings(tmp_path, storage=local)) == []


def test_allowance_naming_target_region_and_reason_permits_it(tmp_path: Path) -> None:
    entry = "inference: us - EU-US DPF certified provider, DPA signed 2026-03-01"
    allowed = enforce_residency(
        settings(tmp_path, inference=US_INFERENCE, residency={"allow_transfers": [entry]})
    )
    assert [v.endpoint.target for v in allowed] == ["inference"]
    # An allowance for another country does not cover this one.
    other = "inference: ch - adequacy decision for Switzerland"
    with pytest.raises(ResidencyRefused):
        enforce_residency(
            settings(tmp_path, inference=US_INFERENCE, residency={"allow_transfers": [other]})
        )


@pytest.mark.parametrize(
    "entry",
    ["inference", "inference: us", "inference: us - ok", "printer: us - because we must"],
)
def test_malformed_allowances_are_configuration_errors(tmp_path: Path, entry: str) -> None:
    with pytest.raises(ValueError, match="allow_transfers"):
        parse_allowance(entry)
    with pytest.raises(ValidationError):
        settings(tmp_path, residency={"allow_transfers": [entry]})


def test_data_map_names_every_data_kind(tmp_path: Path) -> None:
    rows = {row.data: row for row in data_map(settings(tmp_path))}
    for kind in ("chat history", "sessions", "uploads", "artifacts", "inference prompts"):
        (row,) = [r for name, r in rows.items() if name.startswith(kind)]
        assert "EEA" in row.region
        assert row.retention
        assert row.encryption
    assert "AES-256-GCM" in rows["uploads"].encryption


def cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "OBSIGEN_PATHS__DATA_DIR": str(tmp_path), **env}
    environ.pop("OBSIGEN_CONFIG", None)
    return subprocess.run(
        [OBSIGEN, *args], env=environ, capture_output=True, text=True, timeout=120, check=False
    )


def test_serve_and_doctor_refuse_a_non_eea_store_with_a_clear_message(tmp_path: Path) -> None:
    env = {"OBSIGEN_STORAGE__OBJECT_STORE": "s3://bucket?region=us-east-1"}
    served = cli(tmp_path, "serve", "--port", "1", **env)
    assert served.returncode == 2
    assert "refusing to start" in served.stderr
    assert "object_store" in served.stderr
    assert "Traceback" not in served.stderr
    doctor = cli(tmp_path, "doctor", **env)
    assert doctor.returncode == 1
    assert "residency" in doctor.stderr
    assert "REFUSED" in doctor.stdout


async def test_egress_allow_list_refuses_other_origins() -> None:
    allow = EgressAllowList.from_urls(["https://llm.example.eu/v1"])
    assert allow.allows("https://llm.example.eu:443/v1/chat/completions")
    for url in ("http://llm.example.eu/v1", "https://llm.example.eu:8443/", "https://evil.test/"):
        assert not allow.allows(url)

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={})

    async with httpx.AsyncClient(
        transport=httpx.MockTransport(answer), event_hooks=allow.event_hooks()
    ) as client:
        assert (await client.get("https://llm.example.eu/v1/models")).status_code == 200
        with pytest.raises(EgressDenied):
            await client.get("https://evil.test/exfiltrate")
