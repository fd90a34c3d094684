"""``GET /metrics`` on the real platform (SQLite and MariaDB): who may read it, what it counts,
and that nothing of a tenant's ends up in it.

The registry is the process's own and other tests count into it too, so counts are compared
as differences between two scrapes.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from tests.conftest import Platform, platform_settings
from tests.fakes.openai_upstream import FakeReply, FakeToolCall, FakeUpstream
from tests.fuzz.test_openapi_fuzz import CHECKS
from tests.security.test_route_role_matrix import declared_access, endpoints

from obsigen.app import create_app
from obsigen.config import Settings
from obsigen.identity.tenants import tenant_by_name
from obsigen.services import build_services
from obsigen.web.problems import MEDIA_TYPE

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@dataclass
class MetricsPlatform(Platform):
    app: FastAPI | None = None

    def client_from(self, address: str) -> httpx.AsyncClient:
        """The same app, reached from another peer address (what uvicorn puts in scope)."""
        assert self.app is not None
        transport = httpx.ASGITransport(app=self.app, client=(address, 41000))
        return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@asynccontextmanager
async def metrics_platform(
    database_url: str,
    upstream_server: tuple[FakeUpstream, str],
    upstream: FakeUpstream,
    tmp_path: Path,
    change: Callable[[dict[str, Any]], None] | None = None,
) -> AsyncIterator[MetricsPlatform]:
    """Like ``running_platform``, with ``[metrics] enabled`` (and ``change`` applied)."""
    data = platform_settings(tmp_path / "var", database_url, upstream_server[1]).model_dump(
        mode="python"
    )
    data["metrics"] = {"enabled": True}
    if change is not None:
        change(data)
    settings = Settings.model_validate(data)
    services = build_services(settings)
    app = create_app(settings, services)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield MetricsPlatform(settings, services, client, upstream, app=app)
    await services.aclose()


@pytest.fixture
async def platform_with_metrics(
    database_url: str,
    upstream_server: tuple[FakeUpstream, str],
    upstream: FakeUpstream,
    tmp_path: Path,
) -> AsyncIterator[MetricsPlatform]:
    async with metrics_platform(database_url, upstream_server, upstream, tmp_path) as running:
        yield running


def samples(text: str) -> Samples:
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


async def scrape(platform: Platform) -> str:
    response = await platform.client.get("/metrics")
    assert response.status_code == 200, response.text
    return response.text


def assert_problem(response: httpx.Response, status: int, slug: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == MEDIA_TYPE
    assert response.json()["type"].rsplit("/", 1)[-1] == slug
    assert "obsigen_http_requests_total" not in response.text


# --- the endpoint and who may read it ---------------------------------------------------------


async def test_metrics_are_off_unless_enabled(platform: Platform) -> None:
    response = await platform.client.get("/metrics")
    assert_problem(response, 404, "not-found")
    document = (await platform.client.get("/openapi.json")).json()
    assert "/metrics" not in document["paths"]


async def test_loopback_reads_the_exposition(platform_with_metrics: MetricsPlatform) -> None:
    platform = platform_with_metrics
    await platform.client.get("/healthz")

    response = await platform.client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.headers["cache-control"] == "no-store"
    names = {family.name for family in text_string_to_metric_families(response.text)}
    # The default process collectors, and ours.
    assert {"process_cpu_seconds", "python_info", "obsigen_http_requests"} <= names
    assert 'route="/healthz"' in response.text
    openmetrics = await platform.client.get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert openmetrics.text.rstrip().endswith("# EOF")


async def test_a_peer_outside_allow_from_is_refused(
    platform_with_metrics: MetricsPlatform,
) -> None:
    async with platform_with_metrics.client_from("203.0.113.7") as outsider:
        assert_problem(await outsider.get("/metrics"), 403, "forbidden")
        # Claiming loopback in X-Forwarded-For changes nothing: the peer is no trusted proxy.
        spoofed = await outsider.get(
            "/metrics", headers={"X-Forwarded-For": "127.0.0.1", "X-Real-IP": "127.0.0.1"}
        )
        assert_problem(spoofed, 403, "forbidden")
    async with platform_with_metrics.client_from("::1") as loopback_v6:
        assert (await loopback_v6.get("/metrics")).status_code == 200


async def test_behind_a_trusted_proxy_the_forwarded_client_is_judged(
    database_url: str,
    upstream_server: tuple[FakeUpstream, str],
    upstream: FakeUpstream,
    tmp_path: Path,
) -> None:
    # A reverse proxy on this host: its own address is loopback, but the clients it forwards
    # are not, so they must not inherit its access.
    def behind_proxy(data: dict[str, Any]) -> None:
        data["server"] = {**data["server"], "trusted_proxies": ["127.0.0.1"]}
        data["metrics"]["allow_from"] = ["10.20.0.0/16"]

    async with metrics_platform(
        database_url, upstream_server, upstream, tmp_path, behind_proxy
    ) as platform:
        internet = await platform.client.get(
            "/metrics", headers={"X-Forwarded-For": "198.51.100.23"}
        )
        assert_problem(internet, 403, "forbidden")
        # The proxy itself is not in allow_from here.
        assert_problem(await platform.client.get("/metrics"), 403, "forbidden")
        # A client that forged an allowed entry to the left: the proxy's own append wins.
        forged = await platform.client.get(
            "/metrics", headers={"X-Forwarded-For": "10.20.1.1, 198.51.100.23"}
        )
        assert_problem(forged, 403, "forbidden")
        scraper = await platform.client.get("/metrics", headers={"X-Forwarded-For": "10.20.3.4"})
        assert scraper.status_code == 200, scraper.text


async def test_a_bearer_token_is_required_when_configured(
    database_url: str,
    upstream_server: tuple[FakeUpstream, str],
    upstream: FakeUpstream,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = secrets.token_hex(32)
    monkeypatch.setenv("OBSIGEN_TEST_METRICS_TOKEN", token)

    def with_token(data: dict[str, Any]) -> None:
        data["metrics"]["bearer_token"] = "env:OBSIGEN_TEST_METRICS_TOKEN"

    async with metrics_platform(
        database_url, upstream_server, upstream, tmp_path, with_token
    ) as platform:
        missing = await platform.client.get("/metrics")
        assert_problem(missing, 401, "unauthenticated")
        assert missing.headers["www-authenticate"] == "Bearer"
        for wrong in (token[:-1] + ("0" if token[-1] != "0" else "1"), token[:32], "", token * 2):
            response = await platform.client.get("/metrics", headers=platform.auth(wrong))
            assert_problem(response, 401, "unauthenticated")
        # A user's valid API key is not the metrics token.
        key = await platform.api_key()
        assert_problem(
            await platform.client.get("/metrics", headers=platform.auth(key)),
            401,
            "unauthenticated",
        )
        assert (
            await platform.client.get("/metrics", headers=platform.auth(token))
        ).status_code == 200
        # The right token from the wrong address: the address is judged first.
        async with platform.client_from("203.0.113.7") as outsider:
            refused = await outsider.get("/metrics", headers=platform.auth(token))
            assert_problem(refused, 403, "forbidden")


async def test_the_route_is_declared_and_documented(platform_with_metrics: MetricsPlatform) -> None:
    app = create_app(platform_with_metrics.settings, platform_with_metrics.services)
    (endpoint,) = [e for e in endpoints(app) if e.path == "/metrics"]
    access = declared_access(endpoint.dependant)
    assert access.public
    assert not access.permissions
    document = (await platform_with_metrics.client.get("/openapi.json")).json()
    responses = document["paths"]["/metrics"]["get"]["responses"]
    assert set(responses["200"]["content"]) == {"text/plain", "application/openmetrics-text"}
    assert MEDIA_TYPE in responses["4XX"]["content"]
    # What the fuzzer checks, on real answers: 200 in both formats, 403 from outside.
    operation = schemathesis.openapi.from_dict(document)["/metrics"]["GET"]
    case = operation.Case()
    answers = [
        await platform_with_metrics.client.get("/metrics"),
        await platform_with_metrics.client.get(
            "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        ),
    ]
    async with platform_with_metrics.client_from("203.0.113.7") as outsider:
        answers.append(await outsider.get("/metrics"))
    assert [answer.status_code for answer in answers] == [200, 200, 403]
    for answer in answers:
        case.validate_response(answer, checks=CHECKS)


# --- what it counts ----------------------------------------------------------------------------


async def test_requests_count_under_their_route_template(
    platform_with_metrics: MetricsPlatform,
) -> None:
    platform = platform_with_metrics
    key = await platform.api_key()
    created = await platform.client.post(
        "/api/v1/conversations", json={"title": "t"}, headers=platform.auth(key)
    )
    assert created.status_code == 201, created.text
    conversation_id = created.json()["id"]
    template = "/api/v1/conversations/{conversation_id}"
    before = samples(await scrape(platform))

    for _ in range(3):
        response = await platform.client.get(
            f"/api/v1/conversations/{conversation_id}", headers=platform.auth(key)
        )
        assert response.status_code == 200
    missing = await platform.client.get(
        f"/api/v1/conversations/{uuid.uuid4().hex}", headers=platform.auth(key)
    )
    assert missing.status_code == 404
    unknown = await platform.client.get(f"/no/such/{uuid.uuid4().hex}")
    assert unknown.status_code == 404
    odd_method = await platform.client.request("PROPFIND", "/healthz")
    assert odd_method.status_code == 405

    text = await scrape(platform)
    after = samples(text)
    counted = "obsigen_http_requests_total"
    ok = {"route": template, "method": "GET", "status_class": "2xx"}
    assert value(after, counted, **ok) - value(before, counted, **ok) == 3
    gone = {"route": template, "method": "GET", "status_class": "4xx"}
    assert value(after, counted, **gone) - value(before, counted, **gone) == 1
    nowhere = {"route": "unmatched", "method": "GET", "status_class": "4xx"}
    assert value(after, counted, **nowhere) - value(before, counted, **nowhere) >= 1
    other = {"route": "/healthz", "method": "other", "status_class": "4xx"}
    assert value(after, counted, **other) - value(before, counted, **other) == 1
    timed = "obsigen_http_request_duration_seconds_count"
    assert (
        value(after, timed, route=template, method="GET")
        - value(before, timed, route=template, method="GET")
        == 4
    )
    assert conversation_id not in text
    assert "PROPFIND" not in text
    assert "/no/such" not in text


async def test_turns_model_calls_tools_and_limits_are_counted(
    database_url: str,
    upstream_server: tuple[FakeUpstream, str],
    upstream: FakeUpstream,
    tmp_path: Path,
) -> None:
    def one_model_list_a_minute(data: dict[str, Any]) -> None:
        data["ratelimit"] = {**data["ratelimit"], "endpoints": {"/v1/models": "1/minute"}}

    async with metrics_platform(
        database_url, upstream_server, upstream, tmp_path, one_model_list_a_minute
    ) as platform:
        key = await platform.api_key()
        before = samples(await scrape(platform))
        platform.upstream.script = [
            FakeReply(tool_calls=[FakeToolCall("calculator", {"expression": "6 * 7"})]),
            FakeReply(answer="42"),
        ]
        assert (await platform.chat(key, "What is 6 * 7?")).status_code == 200
        platform.upstream.failures = [400]
        assert (await platform.chat(key, "This one fails upstream")).status_code == 502
        assert (
            await platform.client.get("/v1/models", headers=platform.auth(key))
        ).status_code == 200
        limited = await platform.client.get("/v1/models", headers=platform.auth(key))
        assert limited.status_code == 429
        after = samples(await scrape(platform))

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("obsigen_chat_turns_total", outcome="completed") >= 1
    assert grew("obsigen_chat_turns_total", outcome="upstream_error") >= 1
    assert grew("obsigen_tool_calls_total", tool="calculator", decision="allow") >= 1
    assert (
        grew("obsigen_inference_call_duration_seconds_count", provider="openai", call="stream") >= 2
    )
    assert (
        grew("obsigen_inference_errors_total", provider="openai", error="rejected")
        + grew("obsigen_inference_errors_total", provider="openai", error="unavailable")
        >= 1
    )
    assert grew("obsigen_ratelimit_rejections_total", limit="request", scope="endpoint") >= 1
    assert grew("obsigen_safeguard_verdicts_total", verdict="allow", source="user") >= 2
    assert grew("obsigen_audit_emits_total", sink="database") >= 4


# --- attack: nothing of a tenant's ------------------------------------------------------------


async def test_no_tenant_data_after_traffic_from_two_tenants(
    platform_with_metrics: MetricsPlatform,
) -> None:
    platform = platform_with_metrics
    secrets_seen: list[str] = []
    for prefix in ("acme-metrics", "globex-metrics"):
        tenant = await platform.tenant(prefix)
        user = await platform.login(tenant)
        key = await platform.api_key(tenant)
        async with platform.services.sessions() as session:
            tenant_id = (await tenant_by_name(session, tenant)).id
        marker = f"zz{secrets.token_hex(6)}"
        client_tool = f"crm_lookup_{marker}"
        platform.upstream.script = [
            FakeReply(tool_calls=[FakeToolCall(client_tool, {"customer": marker})]),
        ]
        tools = [{"type": "function", "function": {"name": client_tool, "parameters": {}}}]
        chat = await platform.chat(user.token, f"Look up {marker} for {user.email}", tools=tools)
        assert chat.status_code == 200, chat.text
        conversation_id = chat.json()["conversation_id"]
        for path in (
            f"/api/v1/conversations/{conversation_id}",
            f"/api/v1/conversations/{conversation_id}/messages",
            f"/api/v1/files/{marker}",
            f"/{tenant}/{user.email}",
        ):
            await platform.client.get(path, headers=platform.auth(key))
        await platform.client.post(
            "/api/v1/files",
            content=b'--b\r\nContent-Disposition: form-data; name="file"; '
            + f'filename="{marker}-payroll.txt"\r\n\r\nhello\r\n--b--\r\n'.encode(),
            headers={**platform.auth(key), "Content-Type": "multipart/form-data; boundary=b"},
        )
        await platform.client.post(
            "/auth/login", json={"tenant": tenant, "email": user.email, "password": marker}
        )
        secrets_seen += [tenant, tenant_id, user.email, user.user_id, conversation_id, marker]
        secrets_seen.append(key.split("_")[1])  # the API key's lookup part

    text = await scrape(platform)
    lowered = text.lower()
    leaked = [value for value in secrets_seen if value.lower() in lowered]
    assert leaked == [], f"tenant data in the exposition: {leaked}"
    assert "@" not in text  # nothing shaped like an e-mail anywhere
    # The clients' tools were counted, under the one label all client tools share.
    tools = {
        dict(labels)["tool"] for name, labels in samples(text) if name == "obsigen_tool_calls_total"
    }
    assert "client" in tools
    assert all(not tool.startswith("crm_lookup") for tool in tools)
