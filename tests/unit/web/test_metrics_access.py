"""Who may read /metrics (address, then token), its settings, and the HTTP/turn counting."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from prometheus_client import REGISTRY, generate_latest
from pydantic import ValidationError

from obsigen.assistant.turn import InputBlocked, TurnEvent, TurnFinished, TurnStarted
from obsigen.config import MetricsSettings, Settings
from obsigen.errors import Forbidden, InvalidInput, Unauthenticated, UpstreamFailed, UpstreamTimeout
from obsigen.inference.interfaces import Usage
from obsigen.web.metrics import HttpMetrics, MetricsAccess, counted_turn, install_metrics


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def access(token: str = "", allow_from: list[str] | None = None) -> MetricsAccess:
    fields: dict[str, object] = {"enabled": True}
    if token:
        fields["bearer_token"] = "env:OBSIGEN_TEST_METRICS_UNIT"
    if allow_from is not None:
        fields["allow_from"] = allow_from
    return MetricsAccess.from_settings(MetricsSettings.model_validate(fields))


# --- settings -----------------------------------------------------------------------------------


def test_off_by_default_and_loopback_only() -> None:
    settings = Settings().metrics
    assert settings.enabled is False
    assert settings.allow_from == ["127.0.0.0/8", "::1/128"]
    assert settings.bearer_token == ""


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"bearer_token": "s3cr3t-pasted-inline"}, "must be a secret reference"),
        ({"allow_from": ["10.0.0.7/8"]}, "not an IP address or CIDR"),
        ({"allow_from": ["metrics.example"]}, "not an IP address or CIDR"),
        ({"allow_from": []}, "at least 1"),
        ({"allow_from": ["0.0.0.0/0"]}, "set metrics.bearer_token"),
        ({"allow_from": ["::/0"]}, "set metrics.bearer_token"),
    ],
)
def test_unsafe_settings_are_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message) as caught:
        MetricsSettings.model_validate({"enabled": True, **fields})
    assert "s3cr3t-pasted-inline" not in str(caught.value)
    with pytest.raises(ValidationError, match=message) as caught:
        Settings.model_validate({"metrics": {"enabled": True, **fields}})
    assert "s3cr3t-pasted-inline" not in str(caught.value)


def test_open_to_every_address_only_with_a_token() -> None:
    settings = MetricsSettings(allow_from=["0.0.0.0/0", "::/0"], bearer_token="env:X")
    assert settings.allow_from == ["0.0.0.0/0", "::/0"]


def test_a_missing_or_short_token_stops_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OBSIGEN_TEST_METRICS_UNIT", raising=False)
    with pytest.raises(ValueError, match="OBSIGEN_TEST_METRICS_UNIT"):
        access(token="x")
    monkeypatch.setenv("OBSIGEN_TEST_METRICS_UNIT", "short-token")
    with pytest.raises(ValueError, match="shorter than"):
        access(token="x")
    app = FastAPI()
    settings = Settings.model_validate(
        {"metrics": {"enabled": True, "bearer_token": "env:OBSIGEN_TEST_METRICS_UNIT"}}
    )
    with pytest.raises(ValueError, match="shorter than"):
        install_metrics(app, settings)


# --- the guard ----------------------------------------------------------------------------------


def test_addresses_outside_allow_from_are_forbidden() -> None:
    guard = access()
    for allowed in ("127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"):
        guard.check(allowed, "")
    for refused in ("10.0.0.1", "203.0.113.7", "2001:db8::1", "::ffff:10.0.0.1", "", None):
        with pytest.raises(Forbidden):
            guard.check(refused, "")
    with pytest.raises(Forbidden):
        guard.check("not-an-address", "")
    scrapers = access(allow_from=["10.20.0.0/16", "fd00::/8"])
    scrapers.check("10.20.255.1", "")
    scrapers.check("fd00::42", "")
    with pytest.raises(Forbidden):
        scrapers.check("127.0.0.1", "")  # loopback is only the default, not always allowed


def test_the_token_is_checked_after_the_address(monkeypatch: pytest.MonkeyPatch) -> None:
    token = secrets.token_urlsafe(32)
    monkeypatch.setenv("OBSIGEN_TEST_METRICS_UNIT", token)
    guard = access(token="yes")
    guard.check("127.0.0.1", f"Bearer {token}")
    guard.check("127.0.0.1", f"bearer  {token} ")
    for wrong in ("", "Bearer", f"Basic {token}", f"Bearer {token[:-1]}", f"Bearer {token}x"):
        with pytest.raises(Unauthenticated):
            guard.check("127.0.0.1", wrong)
    with pytest.raises(Forbidden):
        guard.check("203.0.113.7", f"Bearer {token}")


# --- counting -----------------------------------------------------------------------------------


async def test_requests_count_by_template_and_clamped_method() -> None:
    router = APIRouter(prefix="/things")

    @router.get("/{thing_id}")
    async def thing(thing_id: str) -> dict[str, str]:
        if thing_id == "boom":
            raise RuntimeError("a bug")
        return {"id": thing_id}

    app = FastAPI()
    app.include_router(router)
    app.add_middleware(HttpMetrics)
    template = "/things/{thing_id}"

    def now() -> tuple[float, ...]:
        return (
            sample("obsigen_http_requests_total", route=template, method="GET", status_class="2xx"),
            sample("obsigen_http_requests_total", route=template, method="GET", status_class="5xx"),
            sample(
                "obsigen_http_requests_total", route="unmatched", method="other", status_class="4xx"
            ),
            sample("obsigen_http_request_duration_seconds_count", route=template, method="GET"),
        )

    before = now()
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        ids = [uuid.uuid4().hex for _ in range(2)]
        for thing_id in ids:
            assert (await client.get(f"/things/{thing_id}")).status_code == 200
        assert (await client.get("/things/boom")).status_code == 500
        assert (await client.request("BREW", f"/coffee/{ids[0]}")).status_code == 404
    assert [a - b for a, b in zip(now(), before, strict=True)] == [2, 1, 1, 3]
    exposition = generate_latest(REGISTRY).decode()
    assert all(thing_id not in exposition for thing_id in ids)
    assert "BREW" not in exposition


def finished() -> TurnFinished:
    return TurnFinished("c", "i", "m", "hello", "stop", Usage())


async def turn(*events: TurnEvent, error: BaseException | None = None) -> AsyncIterator[TurnEvent]:
    for event in events:
        yield event
    if error is not None:
        raise error


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (None, "completed"),
        (InputBlocked("blocked as unsafe"), "blocked"),
        (UpstreamTimeout("slow"), "upstream_timeout"),
        (UpstreamFailed("down"), "upstream_error"),
        (InvalidInput("bad"), "rejected"),
        (RuntimeError("bug"), "error"),
        (asyncio.CancelledError(), "cancelled"),
    ],
)
async def test_each_turn_counts_once_by_outcome(error: BaseException | None, outcome: str) -> None:
    before = sample("obsigen_chat_turns_total", outcome=outcome)
    events = (TurnStarted("c", "i"),) if error is not None else (TurnStarted("c", "i"), finished())
    seen = []
    expected = pytest.raises(type(error)) if error is not None else contextlib.nullcontext()
    with expected:
        async for event in counted_turn(turn(*events, error=error)):
            seen.append(event)
    assert seen == list(events)
    assert sample("obsigen_chat_turns_total", outcome=outcome) - before == 1


async def test_a_consumer_that_stops_early_counts_as_cancelled() -> None:
    before = sample("obsigen_chat_turns_total", outcome="cancelled")
    events = counted_turn(turn(TurnStarted("c", "i"), finished()))
    assert isinstance(await anext(events), TurnStarted)
    await events.aclose()  # type: ignore[attr-defined]
    assert sample("obsigen_chat_turns_total", outcome="cancelled") - before == 1
