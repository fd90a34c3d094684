"""Configuration picks the backend: ``[keys] signing`` / ``kek`` hold one of these URIs.

- ``software`` or ``software:master_key=env:NAME`` (or ``file:/path``): files in
  ``data_dir/keys``; without ``master_key`` a generated ``master.key`` sits beside them.
- ``pkcs11:token=LABEL;pin=env:HSM_PIN[;lib=/path/to/module.so]``
- ``awskms:region=eu-central-1[;endpoint_url=URL][;access_key_id=REF;secret_access_key=REF]``

Backends with optional dependencies are imported only when configured, so the embedded
default needs neither python-pkcs11 nor boto3.
"""

from __future__ import annotations

from pathlib import Path

from obsigen.keys.common import parse_uri_params
from obsigen.keys.errors import KeyConfigError
from obsigen.keys.interfaces import KeyProvider


def make_key_provider(uri: str, data_dir: Path) -> KeyProvider:
    scheme = uri.partition(":")[0].strip()
    if scheme == "software":
        params = _take(uri, scheme, {"master_key"})
        from obsigen.keys.software import SoftwareKeyProvider

        return SoftwareKeyProvider(data_dir / "keys", params.get("master_key", ""))
    if scheme == "pkcs11":
        params = _take(uri, scheme, {"token", "pin", "lib", "cache_ttl"})
        try:
            from obsigen.keys.pkcs11 import DEFAULT_LIB, Pkcs11KeyProvider
        except ImportError as exc:
            raise KeyConfigError(f"pkcs11 keys need python-pkcs11 installed ({exc})") from None
        return Pkcs11KeyProvider(
            params.get("token", ""),
            params.get("pin", ""),
            params.get("lib", DEFAULT_LIB),
            cache_ttl_s=_ttl(params),
        )
    if scheme == "awskms":
        params = _take(
            uri,
            scheme,
            {"region", "endpoint_url", "access_key_id", "secret_access_key", "cache_ttl"},
        )
        try:
            from obsigen.keys.awskms import AwsKmsKeyProvider
        except ImportError as exc:
            raise KeyConfigError(f"awskms keys need boto3 installed ({exc})") from None
        return AwsKmsKeyProvider(
            params.get("region", ""),
            params.get("endpoint_url", ""),
            params.get("access_key_id", ""),
            params.get("secret_access_key", ""),
            cache_ttl_s=_ttl(params),
        )
    # Vault transit is not implemented: no Vault server can run in this project's test
    # environment, and an untested provider would be a guess (docs/keys.md).
    raise KeyConfigError(f"unknown key provider {scheme!r}: use software, pkcs11:... or awskms:...")


def _take(uri: str, scheme: str, allowed: set[str]) -> dict[str, str]:
    params = parse_uri_params(uri.strip(), scheme)
    unknown = sorted(set(params) - allowed)
    if unknown:
        # Name the parameters only: a mistyped one could hold a secret value.
        raise KeyConfigError(f"{scheme}: unknown parameter(s) {', '.join(unknown)}")
    return params


def _ttl(params: dict[str, str]) -> float:
    try:
        ttl = float(params.get("cache_ttl", "30"))
    except ValueError:
        raise KeyConfigError("cache_ttl must be a number of seconds") from None
    if not 0 <= ttl <= 3600:
        raise KeyConfigError("cache_ttl must be between 0 and 3600 seconds")
    return ttl
