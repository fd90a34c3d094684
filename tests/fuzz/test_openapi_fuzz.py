"""Schemathesis over every operation of our OpenAPI document, as a member and as an admin.

Each operation gets ``MAX_EXAMPLES`` generated requests (derandomized, so a failure
reproduces) per identity, sent through the test's own ASGI client to the app on real stores
(SQLite and MariaDB), with real tokens: a member's and an admin's with MFA; SCIM operations
with a SCIM bearer token. Each answer must pass schemathesis's checks: no server error, a
documented status code, a documented content type, a body matching the documented schema.

Hypothesis is synchronous and the platform lives on the test's event loop, so the generation
runs in a worker thread and every request is handed back to the loop.

See docs/fuzzing.md for the bounds, the exclusions and what the fuzzer found.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from tests.conftest import Platform, platform_settings, running_platform
from tests.fakes.openai_upstream import FakeUpstream

from obsigen.authz.permissions import Role
from obsigen.config import Settings
from obsigen.identity.tenants import tenant_by_name
from obsigen.scim.tokens import create_token
from obsigen.web.problems import MEDIA_TYPE

T = TypeVar("T")

MAX_EXAMPLES = 8
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]

# Operations that end the caller's own session(s): each request gets a fresh login, so they
# do not log the identity out for everything after them.
SESSION_ENDING = {("POST", "/auth/logout"), ("DELETE", "/auth/sessions")}

# Operations whose job is to judge credentials sent in the body: 401 is their right answer to
# generated garbage.
CREDENTIAL_CHECKS = {"/auth/login", "/auth/refresh", "/auth/mfa/webauthn/verify"}

# (method, path) -> why it is not fuzzed. Keep this short: each entry is a blind spot.
EXCLUDED: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Identity:
    name: str
    token: str
    fresh: Callable[[], Coroutine[Any, Any, str]]


@pytest.fixture
async def fuzz_platform(
    database_url: str,
    upstream_server: tuple[FakeUpstream, str],
    upstream: FakeUpstream,
    tmp_path: Path,
) -> AsyncIterator[Platform]:
    base = platform_settings(tmp_path / "var", database_url, upstream_server[1])
    # The fuzzer sends hundreds of requests a minute from one principal: lift the limits
    # (they have their own tests) so the answers say something about the operations.
    data = base.model_dump(mode="python")
    data["ratelimit"] = {
        **data["ratelimit"],
        "default": "1000000/minute",
        "principal": "1000000/minute",
        "tenant": "1000000/minute",
        "endpoints": {},
    }
    # GET /metrics is served (and so fuzzed) only where enabled; the client is loopback.
    data["metrics"] = {"enabled": True}
    async with running_platform(Settings.model_validate(data), upstream) as running:
        yield running


async def _scim_token(platform: Platform, tenant: str) -> str:
    async with platform.services.sessions.begin() as session:
        row = await tenant_by_name(session, tenant)
        created = await create_token(session, row, "fuzz", None, max_age=timedelta(days=365))
    return created.secret


def _to_httpx(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Schemathesis serializes for ``requests``; translate the few names httpx spells otherwise."""
    request: dict[str, Any] = {
        "method": kwargs["method"],
        "url": kwargs["url"],
        "headers": {k: str(v) for k, v in (kwargs.get("headers") or {}).items()},
        "params": kwargs.get("params") or None,
    }
    if kwargs.get("json") is not None:
        request["json"] = kwargs["json"]
    data = kwargs.get("data")
    if data is not None:
        if isinstance(data, (bytes, str)):
            request["content"] = data
        else:
            request["data"] = data
    if kwargs.get("files"):
        request["files"] = kwargs["files"]
    if kwargs.get("cookies"):
        request["cookies"] = kwargs["cookies"]
    return request


@dataclass
class Fuzzer:
    """Runs every operation of ``schema`` from a worker thread against the loop's client."""

    platform: Platform
    schema: Any
    loop: asyncio.AbstractEventLoop
    failures: list[str] = field(default_factory=list)
    # (identity, method, path template) -> status codes answered
    answers: dict[tuple[str, str, str], Counter[int]] = field(
        default_factory=lambda: defaultdict(Counter)
    )

    def _await(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=60)

    def operations(self, *, scim: bool) -> list[Any]:
        found = []
        for result in self.schema.get_all_operations():
            operation = result.ok()
            if (operation.method.upper(), operation.path) in EXCLUDED:
                continue
            if operation.path.startswith("/scim/v2") == scim:
                found.append(operation)
        return found

    def fuzz(self, operation: Any, identity: Identity) -> None:
        key = (identity.name, operation.method.upper(), operation.path)
        ends_session = key[1:] in SESSION_ENDING
        found: list[str] = []

        @settings(
            max_examples=MAX_EXAMPLES,
            derandomize=True,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def run(case: Any) -> None:
            # An operation that ends the caller's session gets a session of its own each time.
            token = self._await(identity.fresh()) if ends_session else identity.token
            headers = {"Authorization": f"Bearer {token}"}
            kwargs = case.as_transport_kwargs(base_url="http://testserver", headers=headers)
            response = self._await(self.platform.client.request(**_to_httpx(kwargs)))
            self.answers[key][response.status_code] += 1
            if found:
                return  # one report per operation and identity is enough
            try:
                case.validate_response(response, checks=CHECKS, headers=headers)
            except Exception as exc:  # noqa: BLE001 (collected and reported together)
                found.append(f"[{identity.name}] {operation.label}: {exc}")

        # Collected rather than raised: a raise inside a nested ``@given`` is reported by
        # Hypothesis's pytest plugin as the outer test's failure, and we want every operation
        # fuzzed and every finding listed in one run.
        run()
        self.failures.extend(found)


async def test_every_operation_survives_fuzzing(fuzz_platform: Platform) -> None:
    platform = fuzz_platform
    tenant = await platform.tenant("fuzz")
    scim_tenant = await platform.tenant("fuzz-scim")
    scim_token = await _scim_token(platform, scim_tenant)

    def identity(name: str, role: Role) -> Identity:
        async def fresh() -> str:
            return (await platform.login(tenant, role)).token

        return Identity(name, "", fresh)

    member, admin = identity("member", Role.MEMBER), identity("admin", Role.ADMIN)
    member = Identity("member", await member.fresh(), member.fresh)
    admin = Identity("admin", await admin.fresh(), admin.fresh)

    async def no_fresh_scim() -> str:
        return scim_token

    scim = Identity("scim", scim_token, no_fresh_scim)
    document = (await platform.client.get("/openapi.json")).json()
    fuzzer = Fuzzer(platform, schemathesis.openapi.from_dict(document), asyncio.get_running_loop())

    def work() -> None:
        for who in (member, admin):
            for operation in fuzzer.operations(scim=False):
                fuzzer.fuzz(operation, who)
        for operation in fuzzer.operations(scim=True):
            fuzzer.fuzz(operation, scim)

    await asyncio.to_thread(work)

    assert not fuzzer.failures, "\n\n".join(fuzzer.failures)
    # The tokens worked: apart from the operations whose job is to judge credentials sent in
    # the body, no operation refused every request as unauthenticated.
    refused = [
        key
        for key, statuses in fuzzer.answers.items()
        if set(statuses) == {401} and key[2] not in CREDENTIAL_CHECKS
    ]
    assert not refused, refused
    fuzzed = {key[1:] for key in fuzzer.answers}
    assert len(fuzzed) >= 80, f"only {len(fuzzed)} operations fuzzed"


async def test_the_document_declares_problem_responses(platform: Platform) -> None:
    response = await platform.client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["components"]["schemas"]["Problem"]["required"] == [
        "type",
        "title",
        "status",
        "detail",
    ]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            expected = "application/scim+json" if path.startswith("/scim/v2") else MEDIA_TYPE
            assert expected in responses["4XX"]["content"], (method, path)
            if "422" in responses:
                assert list(responses["422"]["content"]) == [expected], (method, path)


async def test_a_refusal_matches_the_declared_problem(platform: Platform) -> None:
    """The declared Problem schema accepts what the app really sends (and would flag a 500)."""
    document = (await platform.client.get("/openapi.json")).json()
    schema = schemathesis.openapi.from_dict(document)
    operation = schema["/api/v1/conversations/{conversation_id}"]["GET"]
    case = operation.Case(path_parameters={"conversation_id": "0" * 32})
    member = await platform.login()
    response = await platform.client.get(
        "/api/v1/conversations/" + "0" * 32, headers=platform.auth(member.token)
    )
    assert response.status_code == 404
    case.validate_response(response, checks=CHECKS)
    for status, body, media_type, finding in [
        (500, b'{"oops": true}', MEDIA_TYPE, "Server error"),
        (404, b'{"detail": "Not Found"}', "application/json", "Undocumented Content-Type"),
        (404, b'{"detail": "Not Found"}', MEDIA_TYPE, "Response violates schema"),
    ]:
        broken = httpx.Response(
            status, content=body, headers={"content-type": media_type}, request=response.request
        )
        broken.elapsed = response.elapsed
        with pytest.raises(FailureGroup) as caught:
            case.validate_response(broken, checks=CHECKS)
        assert finding in caught.value.message
