"""X-Forwarded-For/-Proto/-Host, believed only from the proxies named in server.trusted_proxies.

``request.client.host`` feeds the audit trail and the login lockout, so it must be the address
of whoever is really on the other end. A client can put anything in X-Forwarded-For; only the
entries appended by our own proxies are facts. Walking the list from the right and skipping
trusted hops therefore gives the first address nobody we trust vouched past: the client.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_FORWARDED = (b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host")
_SCHEMES = {"http": ("http", "ws"), "https": ("https", "wss")}
# host[:port] as it may appear in a Host header: a DNS name or an IP literal, nothing else.
_HOST = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
    r"[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?"
)


class TrustedProxies:
    """A set of networks; ``in`` answers whether an address string belongs to one of them."""

    def __init__(self, entries: Iterable[str]) -> None:
        networks: list[IPNetwork] = []
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=True))
            except ValueError as exc:
                raise ValueError(
                    f"trusted proxy {entry!r} is not an IP address or CIDR: {exc}"
                ) from None
        self.networks: tuple[IPNetwork, ...] = tuple(networks)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __contains__(self, address: object) -> bool:
        ip = parse_address(address) if isinstance(address, str) else None
        return ip is not None and any(ip in network for network in self.networks)


def parse_address(value: str) -> IPAddress | None:
    """An IP from an X-Forwarded-For entry (``1.2.3.4``, ``1.2.3.4:80``, ``[2001:db8::1]:443``)."""
    value = value.strip()
    if value.startswith("["):
        value = value[1 : value.find("]")] if "]" in value else ""
    elif value.count(":") == 1:
        value = value.split(":", 1)[0]
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return None
    # An IPv4 peer on a dual-stack socket shows up as ::ffff:a.b.c.d; compare it as IPv4.
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def client_from_chain(chain: Sequence[str], trusted: TrustedProxies) -> str | None:
    """The right-most entry of X-Forwarded-For that is not a trusted proxy.

    None when that entry is not an address: the chain is then not trustworthy as a whole and the
    caller keeps the direct peer. When every hop is trusted, the left-most is the client.
    """
    for entry in reversed(chain):
        ip = parse_address(entry)
        if ip is None:
            return None
        if not any(ip in network for network in trusted.networks):
            return str(ip)
    first = parse_address(chain[0]) if chain else None
    return str(first) if first is not None else None


class ProxyHeaders:
    """Rewrites ``scope["client"]``, ``scope["scheme"]`` and Host for requests from a trusted proxy.

    From any other peer the X-Forwarded-* headers are removed, so nothing further in (an app
    route, a log line) can be fooled by them either.
    """

    def __init__(self, app: ASGIApp, trusted_proxies: Iterable[str] = ()) -> None:
        self.app = app
        self.trusted = TrustedProxies(trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = list(scope.get("headers", []))
        forwarded = [(n, v) for n, v in headers if n.lower() in _FORWARDED]
        if not forwarded:
            await self.app(scope, receive, send)
            return
        scope = dict(scope)
        others = [(n, v) for n, v in headers if n.lower() not in _FORWARDED]
        peer = scope.get("client")
        if not self.trusted or peer is None or peer[0] not in self.trusted:
            scope["headers"] = others
            await self.app(scope, receive, send)
            return
        scope["headers"] = self._apply(scope, headers, forwarded)
        await self.app(scope, receive, send)

    def _apply(
        self,
        scope: Scope,
        headers: list[tuple[bytes, bytes]],
        forwarded: list[tuple[bytes, bytes]],
    ) -> list[tuple[bytes, bytes]]:
        values: dict[bytes, list[str]] = {name: [] for name in _FORWARDED}
        for name, value in forwarded:
            # Repeated headers are one comma-separated list (RFC 9110 §5.3), in order.
            values[name.lower()].extend(
                part.strip() for part in value.decode("latin-1").split(",") if part.strip()
            )
        chain = values[b"x-forwarded-for"]
        if chain:
            client = client_from_chain(chain, self.trusted)
            if client is not None:
                # The source port of the real client is not forwarded; 0 says "unknown".
                scope["client"] = (client, 0)
        # The nearest proxy appends last, and only the nearest one is known to be ours.
        proto = values[b"x-forwarded-proto"][-1].lower() if values[b"x-forwarded-proto"] else ""
        if proto in _SCHEMES:
            http_scheme, ws_scheme = _SCHEMES[proto]
            scope["scheme"] = ws_scheme if scope["type"] == "websocket" else http_scheme
        host = values[b"x-forwarded-host"][-1] if values[b"x-forwarded-host"] else ""
        if host and _HOST.fullmatch(host):
            headers = [(n, v) for n, v in headers if n.lower() != b"host"]
            headers.append((b"host", host.encode("latin-1")))
        return headers
