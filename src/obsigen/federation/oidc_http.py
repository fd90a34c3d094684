"""Outbound HTTP to an IdP: bounded time, bounded size, no redirects, JSON only.

Redirects are not followed at all: every URL we call comes from the IdP's own discovery
document, so a redirect to elsewhere is either a misconfiguration or an attempt to make us
fetch keys or tokens from a host the admin never named.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from obsigen.federation.oidc_config import check_idp_url
from obsigen.federation.oidc_errors import IdpUnreachable

MAX_DOCUMENT_BYTES = 1 << 20


def checked_url(field: str, value: object) -> str:
    """A URL taken from the IdP's metadata: https, or http on loopback."""
    if not isinstance(value, str) or not value:
        raise IdpUnreachable(f"the identity provider's metadata has no {field}")
    try:
        return check_idp_url(field, value)
    except ValueError as exc:
        raise IdpUnreachable(f"the identity provider's {field} is not acceptable: {exc}") from None


async def _read(response: httpx.Response) -> bytes:
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body.extend(chunk)
        if len(body) > MAX_DOCUMENT_BYTES:
            raise IdpUnreachable("the identity provider's answer is too large")
    return bytes(body)


async def request_json(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    what: str,
    accept_error_json: bool = False,
    **kwargs: Any,
) -> tuple[int, dict[str, Any]]:
    """Calls ``url`` and returns (status, JSON object). A non-2xx answer raises, unless
    ``accept_error_json`` (the token endpoint's errors are JSON the caller explains)."""
    try:
        async with client.stream(method, url, **kwargs) as response:
            body = await _read(response)
    except httpx.HTTPError as exc:
        raise IdpUnreachable(f"{what}: {type(exc).__name__}") from None
    status = response.status_code
    if 300 <= status < 400:
        raise IdpUnreachable(f"{what}: the identity provider answered a redirect ({status})")
    if not 200 <= status < 300 and not (accept_error_json and 400 <= status < 500):
        raise IdpUnreachable(f"{what}: HTTP {status}")
    try:
        document = json.loads(body)
    except ValueError:
        raise IdpUnreachable(f"{what}: the answer is not JSON") from None
    if not isinstance(document, dict):
        raise IdpUnreachable(f"{what}: the answer is not a JSON object")
    return status, document


def new_client(
    timeout_s: float, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    # The environment's proxy and CA settings stay in force: enterprises route egress that way.
    return httpx.AsyncClient(timeout=timeout_s, follow_redirects=False, transport=transport)
