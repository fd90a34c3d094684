"""POST /v1/chat/completions through the whole pipeline, on SQLite and MariaDB."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import Platform
from tests.fakes.openai_upstream import FakeReply, FakeToolCall

PROBLEM = "application/problem+json"


def sse_events(body: str) -> list[Any]:
    events = []
    for line in body.splitlines():
        if line.startswith("data: "):
            data = line.removeprefix("data: ")
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


async def conversation(platform: Platform, key: str, conversation_id: str) -> dict[str, Any]:
    response = await platform.client.get(
        f"/api/v1/conversations/{conversation_id}", headers=platform.auth(key)
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_answer_is_returned_persisted_and_counted(platform: Platform) -> None:
    key = await platform.api_key()
    platform.upstream.answer = "Paris is the capital of France."

    response = await platform.chat(key, "What is the capital of France?")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {
        "role": "assistant",
        "content": "Paris is the capital of France.",
    }
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["prompt_tokens"] == 11
    assert body["usage"]["total_tokens"] == 11 + body["usage"]["completion_tokens"]
    stored = await conversation(platform, key, body["conversation_id"])
    assert [(m["role"], m["content"], m["status"]) for m in stored["messages"]] == [
        ("user", "What is the capital of France?", "ok"),
        ("assistant", "Paris is the capital of France.", "ok"),
    ]
    assert response.headers["x-obsigen-conversation-id"] == body["conversation_id"]


async def test_stream_sends_chunks_then_usage_then_done(platform: Platform) -> None:
    key = await platform.api_key()
    platform.upstream.answer = "one two three four"

    response = await platform.chat(
        key, "Count", stream=True, stream_options={"include_usage": True}
    )

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    text = "".join(
        e["choices"][0]["delta"].get("content") or ""
        for e in events[:-1]
        if isinstance(e, dict) and e["choices"]
    )
    assert text == "one two three four"
    content_chunks = [
        e for e in events[:-1] if e["choices"] and e["choices"][0]["delta"].get("content")
    ]
    # Output filters may hold text back across chunk boundaries, but it still streams.
    assert len(content_chunks) >= 2
    finals = [e for e in events[:-1] if e["choices"] and e["choices"][0]["finish_reason"]]
    assert finals[0]["choices"][0]["finish_reason"] == "stop"
    assert events[-2]["choices"] == []
    assert events[-2]["usage"]["prompt_tokens"] == 11


async def test_conversation_continues_with_stored_history(platform: Platform) -> None:
    key = await platform.api_key()
    first = (await platform.chat(key, "My name is Ana.")).json()

    second = await platform.chat(key, "What is my name?", conversation_id=first["conversation_id"])

    assert second.status_code == 200
    sent = platform.upstream.chat_requests[-1].body
    assert sent is not None
    assert [m["content"] for m in sent["messages"]] == [
        "My name is Ana.",
        platform.upstream.answer,
        "What is my name?",
    ]
    stored = await conversation(platform, key, first["conversation_id"])
    assert len(stored["messages"]) == 4


async def test_server_tool_runs_and_the_model_sees_its_result(platform: Platform) -> None:
    key = await platform.api_key()
    platform.upstream.script = [
        FakeReply(tool_calls=[FakeToolCall("calculator", {"expression": "1234 * 5678"})]),
        FakeReply(answer="1234 * 5678 = 7006652"),
    ]

    response = await platform.chat(key, "What is 1234 * 5678?")

    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "1234 * 5678 = 7006652"
    second = platform.upstream.chat_requests[-1].body
    assert second is not None
    tool_message = second["messages"][-1]
    assert tool_message["role"] == "tool"
    assert tool_message["content"] == "7006652"
    stored = await conversation(platform, key, response.json()["conversation_id"])
    (call,) = stored["tool_calls"]
    assert (call["name"], call["executed_by"], call["decision"], call["status"]) == (
        "calculator",
        "server",
        "allow",
        "ok",
    )
    assert call["result"] == "7006652"
    assert [m["role"] for m in stored["messages"]] == ["user", "assistant", "tool", "assistant"]


async def test_a_looping_model_is_made_to_answer(platform: Platform) -> None:
    key = await platform.api_key()
    platform.upstream.tool_calls = [FakeToolCall("calculator", {"expression": "1/0"})]

    response = await platform.chat(key, "Divide by zero")

    assert response.status_code == 200
    requests = platform.upstream.chat_requests
    # Round 1 calls, round 2 repeats the same call, round 3 is told to answer without tools.
    assert len(requests) == 3
    assert "tools" not in (requests[-1].body or {}) or requests[-1].body["tool_choice"] == "none"


async def test_client_tools_are_returned_to_the_client(platform: Platform) -> None:
    key = await platform.api_key()
    platform.upstream.tool_calls = [
        FakeToolCall("get_weather", {"city": "Vienna"}, id="call_w1"),
    ]
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]

    response = await platform.chat(key, "Weather in Vienna?", tools=tools)

    assert response.status_code == 200, response.text
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"] == [
        {
            "id": "call_w1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Vienna"}'},
        }
    ]
    sent = platform.upstream.chat_requests[-1].body
    assert sent is not None
    assert {"calculator", "get_weather"} <= {t["function"]["name"] for t in sent["tools"]}
    stored = await conversation(platform, key, response.json()["conversation_id"])
    assert [(c["name"], c["executed_by"], c["status"]) for c in stored["tool_calls"]] == [
        ("get_weather", "client", "returned")
    ]


async def test_client_tool_results_continue_the_turn(platform: Platform) -> None:
    key = await platform.api_key()
    platform.upstream.answer = "It is sunny in Vienna."
    messages = [
        {"role": "user", "content": "Weather in Vienna?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_w1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Vienna"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_w1", "content": "sunny, 21 C"},
    ]

    response = await platform.client.post(
        "/v1/chat/completions",
        json={"model": "fake-model", "messages": messages},
        headers=platform.auth(key),
    )

    assert response.status_code == 200, response.text
    sent = platform.upstream.chat_requests[-1].body
    assert sent is not None
    assert sent["messages"][1]["tool_calls"][0]["id"] == "call_w1"
    assert sent["messages"][2] == {
        "role": "tool",
        "content": "sunny, 21 C",
        "tool_call_id": "call_w1",
    }


async def test_server_tool_names_cannot_be_shadowed(platform: Platform) -> None:
    key = await platform.api_key()
    tools = [{"type": "function", "function": {"name": "calculator"}}]

    response = await platform.chat(key, "hi", tools=tools)

    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM


async def test_failed_inference_keeps_the_message_marked_failed(platform: Platform) -> None:
    key = await platform.api_key()
    platform.upstream.failures = [400]
    platform.upstream.failure_message = "context length exceeded"

    response = await platform.chat(key, "Please keep this message")

    assert response.status_code == 502
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["type"].endswith("/inference-failed")
    assert "context length exceeded" in problem["detail"]
    listed = await platform.client.get("/api/v1/conversations", headers=platform.auth(key))
    stored = await conversation(platform, key, listed.json()[0]["id"])
    (message,) = stored["messages"]
    assert (message["content"], message["status"]) == ("Please keep this message", "failed")
    assert "context length exceeded" in message["error"]


async def test_unavailable_upstream_is_retried_then_answers(platform: Platform) -> None:
    key = await platform.api_key()
    platform.upstream.failures = [503]

    response = await platform.chat(key, "hello")

    assert response.status_code == 200
    assert len(platform.upstream.chat_requests) == 2


async def test_unknown_model_is_404(platform: Platform) -> None:
    key = await platform.api_key()

    response = await platform.chat(key, "hello", model="gpt-unknown")

    assert response.status_code == 404
    assert response.json()["type"].endswith("/not-found")
    assert platform.upstream.chat_requests == []


async def test_bad_input_is_a_problem_not_a_500(platform: Platform) -> None:
    key = await platform.api_key()
    bad_bodies: list[Any] = [
        {},
        {"model": "fake-model", "messages": []},
        {"model": "fake-model", "messages": [{"role": "wizard", "content": "x"}]},
        {"model": "fake-model", "messages": [{"role": "user", "content": "x"}], "n": 3},
        {"model": "fake-model", "messages": [{"role": "user", "content": "x"}], "max_tokens": -1},
        {"model": "fake-model", "messages": "not a list"},
        [1, 2, 3],
    ]
    for body in bad_bodies:
        response = await platform.client.post(
            "/v1/chat/completions", json=body, headers=platform.auth(key)
        )
        assert response.status_code == 422, (body, response.text)
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["type"].endswith("/invalid-input")
    response = await platform.client.post(
        "/v1/chat/completions",
        content=b"{not json",
        headers={**platform.auth(key), "content-type": "application/json"},
    )
    assert response.status_code == 422
    assert platform.upstream.chat_requests == []


async def test_missing_or_wrong_credentials_are_401(platform: Platform) -> None:
    key = await platform.api_key()
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "x"}]}
    wrong = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    for headers in ({}, {"Authorization": "Basic abc"}, platform.auth(wrong), platform.auth("x")):
        response = await platform.client.post("/v1/chat/completions", json=body, headers=headers)
        assert response.status_code == 401
        assert response.headers["content-type"] == PROBLEM
        assert response.headers["www-authenticate"] == "Bearer"


async def test_models_lists_what_is_served(platform: Platform) -> None:
    key = await platform.api_key()

    response = await platform.client.get("/v1/models", headers=platform.auth(key))

    assert response.status_code == 200
    assert [m["id"] for m in response.json()["data"]] == ["fake-model"]


async def test_audit_events_share_one_interaction_id(platform: Platform) -> None:
    key = await platform.api_key()
    platform.upstream.script = [
        FakeReply(tool_calls=[FakeToolCall("calculator", {"expression": "2+2"})]),
        FakeReply(answer="4"),
    ]

    body = (await platform.chat(key, "2+2?")).json()

    audit_dir = platform.settings.paths.data_dir / "audit"
    events = [
        json.loads(line)
        for path in audit_dir.glob("*.jsonl")
        for line in path.read_text().splitlines()
    ]
    mine = [e for e in events if e["data"].get("conversation_id") == body["conversation_id"]]
    assert {e["interaction_id"] for e in mine} == {body["id"].removeprefix("chatcmpl-")}
    types = [e["type"] for e in mine]
    for expected in ("chat.prompt", "model.request", "model.response", "policy.decision",
                     "tool.call", "chat.response"):  # fmt: skip
        assert expected in types
    assert types[0] == "chat.prompt"
    assert types[-1] == "chat.response"


async def test_server_tools_can_be_turned_off_per_request(platform: Platform) -> None:
    key = await platform.api_key()

    await platform.chat(key, "hello", server_tools=False)
    await platform.chat(key, "hello")

    without, default = platform.upstream.chat_requests
    assert "tools" not in (without.body or {})
    assert default.body is not None
    assert "calculator" in [t["function"]["name"] for t in default.body["tools"]]


async def test_oversized_or_deep_tool_schemas_are_refused(platform: Platform) -> None:
    key = await platform.api_key()
    deep: dict[str, Any] = {"type": "object"}
    for _ in range(20):
        deep = {"type": "object", "properties": {"x": deep}}
    huge = {"type": "object", "description": "x" * 30_000}
    for schema in (deep, huge):
        tools = [{"type": "function", "function": {"name": "t", "parameters": schema}}]
        response = await platform.chat(key, "hi", tools=tools)
        assert response.status_code == 422
    assert platform.upstream.chat_requests == []
