"""The egress allow-list: outbound HTTP clients talk only to the origins configured for them.

A client built with ``event_hooks=allow_list.event_hooks()`` refuses, before a byte leaves,
any request to another scheme, host or port: a redirect followed by hand, a URL assembled from
upstream data, or a base URL swapped at run time. Clients also set ``trust_env=False`` so
proxy variables cannot route around it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import httpx

from obsigen.errors import ObsigenError

_DEFAULT_PORTS = {"http": 80, "https": 443}


class EgressDenied(ObsigenError):
    status = 502
    type_slug = "egress-denied"
    title = "Outbound request refused by the egress allow-list"


Origin = tuple[str, str, int]


def origin_of(url: str | httpx.URL) -> Origin:
    parsed = httpx.URL(url)
    scheme = parsed.scheme.lower()
    port = parsed.port or _DEFAULT_PORTS.get(scheme, 0)
    return scheme, parsed.host.lower(), port


@dataclass(frozen=True, slots=True)
class EgressAllowList:
    origins: frozenset[Origin]

    @classmethod
    def from_urls(cls, urls: Iterable[str]) -> EgressAllowList:
        return cls(frozenset(origin_of(url) for url in urls if url))

    def allows(self, url: str | httpx.URL) -> bool:
        return origin_of(url) in self.origins

    async def check(self, request: httpx.Request) -> None:
        if not self.allows(request.url):
            scheme, host, port = origin_of(request.url)
            raise EgressDenied(f"outbound request to {scheme}://{host}:{port} is not allowed")

    def event_hooks(self) -> dict[str, list[Callable[..., Awaitable[None]]]]:
        return {"request": [self.check]}
