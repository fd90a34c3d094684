"""EEA residency at start-up: every persistent store and the inference endpoint declares a
region, and one outside the EEA is refused unless ``residency.allow_transfers`` names it.

An entry reads ``"TARGET: REGION - REASON"``: the target, the region it is allowed to be in
(an allowance for "us" does not cover a later move to another country) and why the transfer
is lawful, which start-up logs and ``obsigen doctor`` prints. A remote store that declares no
region is refused too: an unknown location is not an EEA one.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from obsigen.residency import LOCAL, RegionError, is_eea, normalise_region

if TYPE_CHECKING:
    from obsigen.config import Settings

TARGETS = ("database", "redis", "object_store", "inference")
_ENTRY = re.compile(
    r"^\s*(?P<target>[a-z_]+(?:\.[a-z0-9+._-]+)?)\s*:\s*(?P<region>[A-Za-z0-9-]+)"
    r"\s+[-\u2013\u2014]+\s+(?P<reason>\S.*?)\s*$"
)
_MIN_REASON = 10
UNDECLARED = "undeclared"


class ResidencyRefused(RuntimeError):
    """Start-up refused: a store or endpoint outside the EEA without an allowance."""


@dataclass(frozen=True, slots=True)
class Allowance:
    target: str
    region: str
    reason: str


@dataclass(frozen=True, slots=True)
class Endpoint:
    target: str  # database | redis | object_store | inference | audit.<scheme>
    where: str  # location without credentials
    region: str  # a country code, "eea", or UNDECLARED
    persistent: bool
    local: bool  # embedded, or on this host: the deployment's own region


def parse_allowance(entry: str) -> Allowance:
    match = _ENTRY.match(entry)
    if match is None:
        raise ValueError(
            f"residency.allow_transfers: {entry!r} is not 'TARGET: REGION - REASON' "
            "(e.g. 'inference: us - DPA with the provider, SCCs signed 2026-01-10')"
        )
    target = match["target"]
    if target not in TARGETS and not target.startswith("audit."):
        raise ValueError(
            f"residency.allow_transfers: unknown target {target!r}; "
            f"use {', '.join(TARGETS)} or audit.<sink scheme>"
        )
    try:
        region = normalise_region(match["region"])
    except RegionError as exc:
        raise ValueError(f"residency.allow_transfers: {exc}") from None
    if len(match["reason"]) < _MIN_REASON:
        raise ValueError(
            f"residency.allow_transfers: {target}: the reason must say why the transfer is "
            f"lawful (at least {_MIN_REASON} characters)"
        )
    return Allowance(target, region, match["reason"])


def _loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _remote(target: str, url: str, declared: str, persistent: bool, where: str) -> Endpoint:
    host = urlsplit(url).hostname
    if declared:
        return Endpoint(target, where, declared, persistent, local=False)
    if _loopback(host):
        return Endpoint(target, where, LOCAL, persistent, local=True)
    return Endpoint(target, where, UNDECLARED, persistent, local=False)


def _without_secrets(url: str) -> str:
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    return f"{parts.scheme}://{netloc}{parts.path}"


def endpoints(settings: Settings) -> list[Endpoint]:
    """Every persistent store and outbound endpoint of this deployment, with its region."""
    storage = settings.storage
    found: list[Endpoint] = []
    if settings.database_url.startswith("sqlite"):
        found.append(Endpoint("database", "sqlite in data_dir", LOCAL, True, local=True))
    else:
        url = settings.database_url
        region = storage.database_region or storage.region
        found.append(_remote("database", url, region, True, _without_secrets(url)))
    if storage.redis_url:
        region = storage.redis_region or storage.region
        url = storage.redis_url
        found.append(_remote("redis", url, region, True, _without_secrets(url)))
    found.append(_object_store(settings))
    if settings.inference.provider == "local":
        found.append(Endpoint("inference", "in-process llama.cpp", LOCAL, False, local=True))
    else:
        url = settings.inference.base_url
        found.append(
            _remote("inference", url, settings.inference.region, False, _without_secrets(url))
        )
    for sink in settings.audit.sinks:
        if sink in {"database", "file"}:
            continue  # the database above; the file lives in data_dir
        scheme = sink.split(":", 1)[0]
        region = settings.audit.sink_regions.get(scheme, "") or storage.region
        target = f"audit.{scheme}"
        found.append(_remote(target, _sink_url(sink), region, True, _without_secrets(sink)))
    return found


def _sink_url(sink: str) -> str:
    # "otlp+http://host:4318" and "syslog+tls://host:6514" parse as URLs; "s3://bucket?.."
    # names a bucket, not a host, so it counts as remote unless a loopback endpoint_url says.
    if sink.startswith("s3://"):
        endpoint = parse_qs(urlsplit(sink).query).get("endpoint_url", [""])[-1]
        return endpoint or "https://s3.amazonaws.com"
    return sink


def _object_store(settings: Settings) -> Endpoint:
    storage = settings.storage
    spec = storage.object_store.strip()
    if spec == "local":
        return Endpoint("object_store", "data_dir/objects", LOCAL, True, local=True)
    query = {k: v[-1] for k, v in parse_qs(urlsplit(spec).query).items()}
    region = storage.object_store_region or storage.region
    if not region and query.get("region"):
        try:
            region = normalise_region(query["region"])
        except RegionError:
            region = ""
    where = spec.split("?", 1)[0]
    endpoint = query.get("endpoint_url", "")
    if not region and endpoint and _loopback(urlsplit(endpoint).hostname):
        return Endpoint("object_store", where, LOCAL, True, local=True)
    return Endpoint("object_store", where, region or UNDECLARED, True, local=False)


def effective_region(endpoint: Endpoint, settings: Settings) -> str:
    return settings.residency.region if endpoint.region == LOCAL else endpoint.region


def allowances(settings: Settings) -> dict[str, Allowance]:
    parsed = [parse_allowance(entry) for entry in settings.residency.allow_transfers]
    return {entry.target: entry for entry in parsed}


@dataclass(frozen=True, slots=True)
class Verdict:
    endpoint: Endpoint
    region: str
    eea: bool
    allowance: Allowance | None

    @property
    def refused(self) -> bool:
        return not self.eea and self.allowance is None


def assess(settings: Settings) -> list[Verdict]:
    allowed = allowances(settings)
    verdicts = []
    for endpoint in endpoints(settings):
        region = effective_region(endpoint, settings)
        eea = region != UNDECLARED and is_eea(region)
        entry = allowed.get(endpoint.target)
        # An allowance covers the region it names, nothing else.
        fits = entry is not None and not eea and entry.region == region
        verdicts.append(Verdict(endpoint, region, eea, entry if fits else None))
    return verdicts


def enforce_residency(settings: Settings) -> list[Verdict]:
    """Refuse (ResidencyRefused) a store or inference endpoint outside the EEA or of unknown
    region without an allowance; return the allowed transfers, for the start-up log."""
    verdicts = assess(settings)
    refused = [v for v in verdicts if v.refused]
    if refused:
        lines = []
        for v in refused:
            if v.region == UNDECLARED:
                lines.append(
                    f"{v.endpoint.target} ({v.endpoint.where}) declares no region: set its "
                    "region in the configuration (docs/residency.md)"
                )
            else:
                lines.append(
                    f"{v.endpoint.target} ({v.endpoint.where}) is in {v.region!r}, outside "
                    f"the EEA: add residency.allow_transfers = ['{v.endpoint.target}: "
                    f"{v.region} - <why this transfer is lawful>'] or move it"
                )
        raise ResidencyRefused("refusing to start: " + "; ".join(lines))
    return [v for v in verdicts if v.allowance is not None]
