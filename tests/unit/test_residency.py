"""Regions: country codes, cloud region names, and EEA membership."""

from __future__ import annotations

import pytest

from obsigen.residency import EEA_COUNTRIES, LOCAL, RegionError, is_eea, normalise_region

EU_27 = {
    "at", "be", "bg", "hr", "cy", "cz", "dk", "ee", "fi", "fr", "de", "gr", "hu", "ie",
    "it", "lv", "lt", "lu", "mt", "nl", "pl", "pt", "ro", "sk", "si", "es", "se",
}  # fmt: skip


def test_eea_is_the_eu_plus_iceland_liechtenstein_norway() -> None:
    assert len(EU_27) == 27
    assert EU_27 | {"is", "li", "no"} == EEA_COUNTRIES


@pytest.mark.parametrize("region", sorted(EEA_COUNTRIES))
def test_eea_members(region: str) -> None:
    assert is_eea(region)


@pytest.mark.parametrize("region", ["is", "li", "no", "IS", " No ", "eea", "EEA"])
def test_non_eu_eea_members_and_spellings(region: str) -> None:
    assert is_eea(region)


@pytest.mark.parametrize("region", ["ch", "gb", "us", "cn", "ru", "tr", "ua", "uk"])
def test_outside_the_eea(region: str) -> None:
    assert not is_eea(region)


@pytest.mark.parametrize(
    ("cloud", "country"),
    [
        ("eu-central-1", "de"),
        ("EU-CENTRAL-1", "de"),
        ("eu-west-1", "ie"),
        ("eu-west-3", "fr"),
        ("eu-north-1", "se"),
        ("eu-central-2", "ch"),
        ("eu-west-2", "gb"),
        ("us-east-1", "us"),
    ],
)
def test_cloud_region_names_map_to_countries(cloud: str, country: str) -> None:
    assert normalise_region(cloud) == country


@pytest.mark.parametrize(
    ("region", "inside"),
    [("eu-central-1", True), ("eu-north-1", True), ("eu-central-2", False), ("eu-west-2", False)],
)
def test_an_eu_prefix_does_not_mean_eea(region: str, inside: bool) -> None:
    # Zurich and London are "eu-" regions of cloud providers but outside the EEA.
    assert is_eea(region) is inside


def test_local_and_eea_pass_through() -> None:
    assert normalise_region("local") == LOCAL
    assert normalise_region(" EEA ") == "eea"


@pytest.mark.parametrize(
    "junk",
    ["", " ", "d", "deu", "germany", "eu-central-9", "d3", "12", "dé", "ß", "de;us", "xx-1"],
)
def test_junk_is_refused(junk: str) -> None:
    with pytest.raises(RegionError, match="unknown region"):
        normalise_region(junk)
    with pytest.raises(RegionError):
        is_eea(junk)


def test_region_error_is_a_value_error() -> None:
    # Settings validators rely on this to turn it into a validation error.
    assert issubclass(RegionError, ValueError)


def test_two_letter_codes_outside_the_list_are_not_eea() -> None:
    # "eu" is not a country: declaring it does not count as EEA (fails closed).
    assert not is_eea("eu")
