"""``awssm:`` references: a secret read from AWS Secrets Manager with GetSecretValue.

Form: ``awssm:SECRET-ID-OR-ARN[#json-field][?region=..&endpoint_url=..&ttl=..]``. Credentials
come from boto3's default chain (environment, instance or task role): a reference to the
credentials that read references would only move the problem. ``#field`` picks one field of a
JSON secret (the usual shape of RDS and other rotated secrets). Values are cached ``ttl``
seconds (default 60, at most 3600, 0 disables) so a rotation in Secrets Manager shows within
a minute while start-up and reconnects do not call AWS for every use.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from obsigen.secretref import SecretRefError

DEFAULT_TTL_S = 60.0
MAX_TTL_S = 3600.0
_PARAMS = frozenset({"region", "endpoint_url", "ttl"})


@dataclass(frozen=True, slots=True)
class AwsSecretRef:
    secret_id: str
    field: str
    region: str
    endpoint_url: str
    ttl_s: float


def parse_awssm(target: str) -> AwsSecretRef:
    """The parts of an ``awssm:`` reference (``target`` is what follows ``awssm:``)."""
    # Secret names allow only [A-Za-z0-9/_+=.@-], so '?' and '#' cannot be part of the id.
    body, _, query = target.partition("?")
    secret_id, _, field = body.partition("#")
    if not secret_id:
        raise SecretRefError("awssm: reference names no secret")
    params: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name not in _PARAMS:
            raise SecretRefError(f"awssm:{secret_id}: unknown parameter {name}")
        params[name] = value
    try:
        ttl = float(params.get("ttl", DEFAULT_TTL_S))
    except ValueError:
        raise SecretRefError(f"awssm:{secret_id}: ttl must be a number of seconds") from None
    if not 0 <= ttl <= MAX_TTL_S:
        raise SecretRefError(f"awssm:{secret_id}: ttl must be between 0 and {MAX_TTL_S:.0f}")
    region = params.get("region", "") or _arn_region(secret_id)
    return AwsSecretRef(secret_id, field, region, params.get("endpoint_url", ""), ttl)


def _arn_region(secret_id: str) -> str:
    parts = secret_id.split(":")
    return parts[3] if secret_id.startswith("arn:") and len(parts) > 3 else ""


class _Cache:
    """Secret strings by (id, region, endpoint), each kept until its deadline."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str, str], tuple[str, float]] = {}

    def get(self, key: tuple[str, str, str]) -> str | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or time.monotonic() >= entry[1]:
                self._entries.pop(key, None)
                return None
            return entry[0]

    def put(self, key: tuple[str, str, str], value: str, ttl_s: float) -> None:
        if ttl_s <= 0:
            return
        with self._lock:
            self._entries[key] = (value, time.monotonic() + ttl_s)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_cache = _Cache()


def clear_cache() -> None:
    """Forget every cached secret (tests; after a known rotation)."""
    _cache.clear()


def resolve_awssm(target: str) -> str:
    ref = parse_awssm(target)
    key = (ref.secret_id, ref.region, ref.endpoint_url)
    # ttl=0 means "always ask": it must not be served what another reference cached.
    secret = _cache.get(key) if ref.ttl_s > 0 else None
    if secret is None:
        secret = _fetch(ref)
        _cache.put(key, secret, ref.ttl_s)
    return _pick(ref, secret)


def _fetch(ref: AwsSecretRef) -> str:
    try:
        import boto3  # type: ignore[import-untyped]
        from botocore.config import Config  # type: ignore[import-untyped]
        from botocore.exceptions import (  # type: ignore[import-untyped]
            BotoCoreError,
            ClientError,
        )
    except ImportError:
        raise SecretRefError("awssm: references need boto3 installed") from None
    kwargs: dict[str, Any] = {
        # Bounded: a start-up that cannot reach AWS fails in seconds, not minutes.
        "config": Config(connect_timeout=5, read_timeout=10, retries={"max_attempts": 2})
    }
    if ref.region:
        kwargs["region_name"] = ref.region
    if ref.endpoint_url:
        kwargs["endpoint_url"] = ref.endpoint_url
    try:
        client = boto3.client("secretsmanager", **kwargs)
        response = client.get_secret_value(SecretId=ref.secret_id)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        raise SecretRefError(f"awssm:{ref.secret_id}: cannot read the secret ({code})") from None
    except BotoCoreError as exc:
        raise SecretRefError(
            f"awssm:{ref.secret_id}: cannot read the secret ({type(exc).__name__})"
        ) from None
    if "SecretString" in response:
        return str(response["SecretString"])
    try:
        return bytes(response["SecretBinary"]).decode("utf-8")
    except (KeyError, UnicodeDecodeError):
        raise SecretRefError(f"awssm:{ref.secret_id}: the secret is not text") from None


def _pick(ref: AwsSecretRef, secret: str) -> str:
    if not ref.field:
        return secret
    try:
        document = json.loads(secret)
    except ValueError:
        raise SecretRefError(
            f"awssm:{ref.secret_id}#{ref.field}: the secret is not a JSON object"
        ) from None
    if not isinstance(document, dict) or ref.field not in document:
        raise SecretRefError(f"awssm:{ref.secret_id}: the secret has no field {ref.field}")
    value = document[ref.field]
    if isinstance(value, dict | list) or value is None:
        raise SecretRefError(f"awssm:{ref.secret_id}#{ref.field}: the field is not a scalar")
    return value if isinstance(value, str) else json.dumps(value)
