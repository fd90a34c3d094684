"""``awssm:`` references against moto's Secrets Manager on loopback: plain, JSON field, cache."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from tests.conftest import require_service
from tests.fakes.key_services import KMS_REGION, MotoServer, moto_available, moto_server

from obsigen.config import Settings
from obsigen.secretref import SecretRefError, resolve_secret
from obsigen.secrets.aws import clear_cache, parse_awssm


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    require_service("moto_server (moto[server] and boto3)", moto_available())
    with moto_server() as server:
        yield server


@pytest.fixture
def client(moto: MotoServer) -> Iterator[Any]:
    import boto3

    clear_cache()
    yield boto3.client("secretsmanager", region_name=KMS_REGION, endpoint_url=moto.endpoint_url)
    clear_cache()


def _ref(moto: MotoServer, secret_id: str, suffix: str = "", ttl: str = "60") -> str:
    return (
        f"awssm:{secret_id}{suffix}?region={KMS_REGION}&endpoint_url={moto.endpoint_url}&ttl={ttl}"
    )


def test_a_plain_secret_resolves(moto: MotoServer, client: Any) -> None:
    value = secrets.token_urlsafe(24)
    client.create_secret(Name="obsigen/test/plain", SecretString=value)
    assert resolve_secret(_ref(moto, "obsigen/test/plain")) == value


def test_a_json_field_resolves_and_a_missing_field_is_named(moto: MotoServer, client: Any) -> None:
    value = secrets.token_urlsafe(24)
    created = client.create_secret(
        Name="obsigen/test/json", SecretString=json.dumps({"api_key": value, "port": 5432})
    )
    assert resolve_secret(_ref(moto, "obsigen/test/json", "#api_key")) == value
    assert resolve_secret(_ref(moto, "obsigen/test/json", "#port")) == "5432"
    # By ARN, the region comes from the ARN itself.
    by_arn = f"awssm:{created['ARN']}#api_key?endpoint_url={moto.endpoint_url}"
    assert resolve_secret(by_arn) == value
    with pytest.raises(SecretRefError, match="no field absent") as raised:
        resolve_secret(_ref(moto, "obsigen/test/json", "#absent"))
    assert value not in str(raised.value)


def test_a_missing_secret_is_refused_by_name(moto: MotoServer, client: Any) -> None:
    with pytest.raises(SecretRefError, match=r"obsigen/test/nope.*ResourceNotFoundException"):
        resolve_secret(_ref(moto, "obsigen/test/nope"))


def test_values_are_cached_for_the_ttl_only(moto: MotoServer, client: Any) -> None:
    first, second = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    client.create_secret(Name="obsigen/test/rotating", SecretString=first)
    cached = _ref(moto, "obsigen/test/rotating")
    assert resolve_secret(cached) == first
    client.put_secret_value(SecretId="obsigen/test/rotating", SecretString=second)
    assert resolve_secret(cached) == first  # within the TTL
    assert resolve_secret(_ref(moto, "obsigen/test/rotating", ttl="0")) == second
    clear_cache()
    assert resolve_secret(cached) == second


def test_settings_accept_an_awssm_reference(moto: MotoServer, client: Any) -> None:
    value = secrets.token_urlsafe(24)
    client.create_secret(Name="obsigen/test/inference", SecretString=value)
    ref = _ref(moto, "obsigen/test/inference")
    settings = Settings(inference={"provider": "openai", "base_url": "http://x", "api_key": ref})
    assert resolve_secret(settings.inference.api_key) == value


@pytest.mark.parametrize(
    ("target", "message"),
    [("", "names no secret"), ("x?colour=red", "unknown parameter"), ("x?ttl=soon", "ttl")],
)
def test_malformed_references_are_refused(target: str, message: str) -> None:
    with pytest.raises(SecretRefError, match=message):
        parse_awssm(target)
