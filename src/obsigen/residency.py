"""Regions of stores and endpoints, and whether they lie inside the EEA.

Regions are ISO 3166-1 alpha-2 country codes ("de", "fr", "us"). Cloud region names such as
``eu-central-1`` are mapped to their country so a store can be declared either way.
"""

from __future__ import annotations

# EU-27 plus Iceland, Liechtenstein and Norway.
EEA_COUNTRIES: frozenset[str] = frozenset(
    {
        "at", "be", "bg", "hr", "cy", "cz", "dk", "ee", "fi", "fr", "de", "gr", "hu", "ie",
        "it", "lv", "lt", "lu", "mt", "nl", "pl", "pt", "ro", "sk", "si", "es", "se",
        "is", "li", "no",
    }
)  # fmt: skip

# Cloud provider region names that customers copy from their consoles.
_CLOUD_REGIONS: dict[str, str] = {
    "eu-central-1": "de",
    "eu-central-2": "ch",
    "eu-west-1": "ie",
    "eu-west-2": "gb",
    "eu-west-3": "fr",
    "eu-north-1": "se",
    "eu-south-1": "it",
    "eu-south-2": "es",
    "us-east-1": "us",
    "us-east-2": "us",
    "us-west-1": "us",
    "us-west-2": "us",
}

LOCAL = "local"  # embedded stores: wherever this host runs, declared by residency.region


class RegionError(ValueError):
    """A region that is neither a country code nor a known cloud region."""


def normalise_region(value: str) -> str:
    region = value.strip().lower()
    if region in _CLOUD_REGIONS:
        return _CLOUD_REGIONS[region]
    if region in {"eea", LOCAL}:
        return region
    if len(region) == 2 and region.isascii() and region.isalpha():
        return region
    raise RegionError(f"unknown region {value!r}: use an ISO 3166-1 alpha-2 country code")


def is_eea(region: str) -> bool:
    region = normalise_region(region)
    return region == "eea" or region in EEA_COUNTRIES
