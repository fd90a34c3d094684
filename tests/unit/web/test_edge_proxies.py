"""X-Forwarded-* believed only from trusted proxies; the client is the right-most untrusted hop."""

from __future__ import annotations

from typing import Any

import pytest
from edge_testkit import edge_client, edge_settings
from pydantic import ValidationError

from obsigen.config import Settings
from obsigen.web.proxies import TrustedProxies, client_from_chain, parse_address

PROXY = "10.0.0.2"


def behind(*proxies: str) -> Settings:
    return edge_settings(server={"trusted_proxies": list(proxies)})


async def seen(settings: Settings, peer: str, headers: Any) -> dict[str, Any]:
    async with edge_client(settings, peer=peer) as client:
        response = await client.get("/ok", headers=headers)
    assert response.status_code == 200
    result: dict[str, Any] = response.json()
    result["hsts"] = "strict-transport-security" in response.headers
    return result


async def test_spoofed_forwarded_headers_from_an_untrusted_peer_are_ignored() -> None:
    headers = {
        "X-Forwarded-For": "198.51.100.1",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "bank.example",
    }
    got = await seen(behind(PROXY), "203.0.113.9", headers)
    assert got["client"] == "203.0.113.9"
    assert got["scheme"] == "http"
    assert got["host"] == "testserver"
    assert not got["hsts"]
    # Removed, so no route or log line further in can be fooled by them either.
    assert got["forwarded_for"] is None


async def test_without_trusted_proxies_nobody_is_believed() -> None:
    got = await seen(behind(), "127.0.0.1", {"X-Forwarded-For": "198.51.100.1"})
    assert got["client"] == "127.0.0.1"


async def test_the_right_most_untrusted_address_is_the_client_not_the_left_most() -> None:
    # The client sent "1.1.1.1" itself; the proxy appended the address it really saw.
    got = await seen(behind(PROXY), PROXY, {"X-Forwarded-For": "1.1.1.1, 198.51.100.7"})
    assert got["client"] == "198.51.100.7"
    assert got["forwarded_for"] == "1.1.1.1, 198.51.100.7"


async def test_a_chain_of_trusted_proxies_is_skipped() -> None:
    headers = {"X-Forwarded-For": "6.6.6.6, 198.51.100.7, 10.1.2.3, 10.0.0.9"}
    got = await seen(behind("10.0.0.0/8"), "10.0.0.2", headers)
    assert got["client"] == "198.51.100.7"


async def test_repeated_headers_are_one_list_in_order() -> None:
    headers = [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "198.51.100.7")]
    got = await seen(behind(PROXY), PROXY, headers)
    assert got["client"] == "198.51.100.7"


async def test_forwarded_https_sets_the_scheme_and_brings_hsts() -> None:
    headers = {"X-Forwarded-For": "198.51.100.7", "X-Forwarded-Proto": "https"}
    got = await seen(behind(PROXY), PROXY, headers)
    assert (got["client"], got["scheme"], got["hsts"]) == ("198.51.100.7", "https", True)


async def test_only_the_nearest_proxys_proto_counts() -> None:
    got = await seen(behind(PROXY), PROXY, {"X-Forwarded-Proto": "https, http"})
    assert got["scheme"] == "http"
    assert not got["hsts"]


async def test_an_unknown_proto_is_ignored() -> None:
    got = await seen(behind(PROXY), PROXY, {"X-Forwarded-Proto": "gopher"})
    assert got["scheme"] == "http"


async def test_forwarded_host_from_a_trusted_proxy_becomes_the_host() -> None:
    got = await seen(behind(PROXY), PROXY, {"X-Forwarded-Host": "chat.example.eu"})
    assert got["host"] == "chat.example.eu"


@pytest.mark.parametrize("host", ["evil.example/path", "a b", "x@y", ""])
async def test_a_malformed_forwarded_host_is_ignored(host: str) -> None:
    got = await seen(behind(PROXY), PROXY, {"X-Forwarded-Host": host})
    assert got["host"] == "testserver"


async def test_a_garbage_client_entry_leaves_the_peer_as_client() -> None:
    got = await seen(behind(PROXY), PROXY, {"X-Forwarded-For": "198.51.100.7, unknown"})
    assert got["client"] == PROXY


async def test_an_ipv6_proxy_and_client() -> None:
    headers = {"X-Forwarded-For": "[2001:db8::7]:51234"}
    got = await seen(behind("2001:db8:ffff::/48"), "2001:db8:ffff::1", headers)
    assert got["client"] == "2001:db8::7"


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("198.51.100.7", "198.51.100.7"),
        (" 198.51.100.7 ", "198.51.100.7"),
        ("198.51.100.7:8080", "198.51.100.7"),
        ("2001:db8::1", "2001:db8::1"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("::ffff:10.0.0.2", "10.0.0.2"),
        ("unknown", None),
        ("_hidden", None),
        ("[2001:db8::1", None),
        ("", None),
    ],
)
def test_parse_address(entry: str, expected: str | None) -> None:
    ip = parse_address(entry)
    assert (str(ip) if ip is not None else None) == expected


def test_when_every_hop_is_trusted_the_first_one_is_the_client() -> None:
    trusted = TrustedProxies(["10.0.0.0/8"])
    assert client_from_chain(["10.9.9.9", "10.0.0.3"], trusted) == "10.9.9.9"


def test_an_ipv4_mapped_peer_is_matched_as_ipv4() -> None:
    assert "::ffff:10.0.0.2" in TrustedProxies(["10.0.0.0/24"])
    assert "10.0.1.2" not in TrustedProxies(["10.0.0.0/24"])


@pytest.mark.parametrize("entry", ["10.0.0.300", "10.0.0.1/8", "proxy.internal", "10.0.0.0/33", ""])
def test_malformed_trusted_proxies_are_refused_at_start(entry: str) -> None:
    with pytest.raises(ValidationError, match="trusted_proxies"):
        behind(entry)
    with pytest.raises(ValueError, match="trusted proxy"):
        TrustedProxies([entry])


def test_trusted_proxies_take_addresses_and_networks() -> None:
    settings = behind("10.0.0.1", "10.8.0.0/16", "fd00::/8", " 192.0.2.1 ")
    assert settings.server.trusted_proxies == ["10.0.0.1", "10.8.0.0/16", "fd00::/8", "192.0.2.1"]
