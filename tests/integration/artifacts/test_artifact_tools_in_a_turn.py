"""The assistant calls make_slides / make_chart in a chat turn: the artifact is stored for the
caller, tied to the conversation and interaction, audited, and named to the model."""

from __future__ import annotations

import io
import re

from pptx import Presentation
from tests.conftest import Platform
from tests.fakes.openai_upstream import FakeReply, FakeToolCall
from tests.integration.artifacts.artifact_helpers import CHART_ARGS, artifact_store, audit_events

from obsigen.tools.artifact_tools import artifact_tools

DECK = {
    "title": "Board update",
    "subtitle": "November",
    "slides": [
        {"title": "Numbers", "bullets": ["Revenue up", "Churn down"], "chart": CHART_ARGS},
        {"title": "Next", "bullets": ["Hire two engineers"], "notes": "Ask for budget."},
    ],
}


def with_artifact_tools(platform: Platform) -> None:
    for tool in artifact_tools(artifact_store(platform)):
        if tool.spec.name not in platform.services.tools:
            platform.services.tools.register(tool)


async def test_the_assistant_makes_a_deck_the_user_can_download(platform: Platform) -> None:
    with_artifact_tools(platform)
    key = await platform.api_key()
    platform.upstream.script = [
        FakeReply(tool_calls=[FakeToolCall("make_slides", DECK)]),
        FakeReply(answer="Your deck is ready."),
    ]

    response = await platform.chat(key, "Make me slides for the board.")

    assert response.status_code == 200, response.text
    body = response.json()
    offered = {t["function"]["name"] for t in platform.upstream.chat_requests[0].body["tools"]}
    assert {"make_slides", "make_chart"} <= offered
    tool_message = platform.upstream.chat_requests[1].body["messages"][-1]
    assert tool_message["role"] == "tool"
    match = re.search(r"as artifact ([0-9a-f]{32})", tool_message["content"])
    assert match, tool_message["content"]
    artifact_id = match.group(1)
    assert "'Board update.pptx'" in tool_message["content"]

    listed = await platform.client.get("/api/v1/artifacts", headers=platform.auth(key))
    (meta,) = listed.json()
    assert meta["id"] == artifact_id
    assert meta["kind"] == "slides"
    assert meta["conversation_id"] == body["conversation_id"]
    assert body["id"] == f"chatcmpl-{meta['interaction_id']}"
    download = await platform.client.get(
        f"/api/v1/artifacts/{artifact_id}", headers=platform.auth(key)
    )
    assert download.headers["content-type"] == (
        "application/vnd.openxmlformats-officedocument.presentationml.presentation"
    )
    deck = Presentation(io.BytesIO(download.content))
    titles = [s.shapes.title.text_frame.text for s in deck.slides if s.shapes.title is not None]
    assert titles == ["Board update", "Numbers", "Next"]

    created = [e for e in audit_events(platform) if e["type"] == "artifact.create"]
    assert created[-1]["interaction_id"] == meta["interaction_id"]
    assert created[-1]["data"]["source"] == "tool:make_slides"
    calls = [e for e in audit_events(platform) if e["type"] == "tool.call"]
    assert calls[-1]["data"]["tool"] == "make_slides"
    assert calls[-1]["data"]["status"] == "ok"


async def test_bad_arguments_go_back_to_the_model_and_nothing_is_stored(
    platform: Platform,
) -> None:
    with_artifact_tools(platform)
    key = await platform.api_key()
    bad = {**CHART_ARGS, "series": [{"values": [1, 2, 3]}]}
    platform.upstream.script = [
        FakeReply(tool_calls=[FakeToolCall("make_chart", bad)]),
        FakeReply(answer="Sorry, I could not draw that."),
    ]

    response = await platform.chat(key, "Chart this.")

    assert response.status_code == 200, response.text
    tool_message = platform.upstream.chat_requests[1].body["messages"][-1]
    assert tool_message["content"].startswith("error: invalid arguments: ")
    assert "3 values for 2 labels" in tool_message["content"]
    listed = await platform.client.get("/api/v1/artifacts", headers=platform.auth(key))
    assert listed.json() == []
