"""The OpenAI wire format, without a network."""

from __future__ import annotations

import pytest

from obsigen.inference.errors import InferenceBadResponse, InferenceUnavailable
from obsigen.inference.openai_wire import (
    SSEDecoder,
    StreamAssembler,
    decode_completion,
    error_message,
)


def test_sse_decoder_joins_multiline_data_and_skips_comments() -> None:
    decoder = SSEDecoder()
    lines = [": keep-alive", "event: message", 'data: {"a":', "data:1}", "", "data: [DONE]"]
    events = [e for e in (decoder.feed(line) for line in lines) if e is not None]
    assert events == ['{"a":\n1}']
    assert decoder.flush() == "[DONE]"
    assert decoder.flush() is None


def test_empty_stream_is_a_bad_response() -> None:
    with pytest.raises(InferenceBadResponse, match="empty stream"):
        StreamAssembler(model="m").finish(done_seen=True)


def test_stream_cut_before_finish_is_a_bad_response() -> None:
    assembler = StreamAssembler(model="m")
    assembler.feed({"choices": [{"delta": {"content": "hi"}}]})
    with pytest.raises(InferenceBadResponse, match="ended before"):
        assembler.finish(done_seen=False)


def test_error_event_mid_stream_is_unavailable() -> None:
    with pytest.raises(InferenceUnavailable, match="boom"):
        StreamAssembler(model="m").feed({"error": {"message": "boom"}})


def test_tool_call_arguments_sent_as_object_become_json_text() -> None:
    completion = decode_completion(
        {
            "choices": [
                {
                    "message": {
                        "content": None,
                        "tool_calls": [
                            {"id": "c1", "function": {"name": "f", "arguments": {"x": 1}}}
                        ],
                    },
                    "finish_reason": "function_call",
                }
            ]
        },
        model="m",
    )
    assert completion.tool_calls[0].arguments == '{"x": 1}'
    assert completion.finish_reason == "tool_calls"


def test_error_message_prefers_the_upstream_message_and_truncates() -> None:
    assert error_message(b'{"error": {"message": "nope"}}') == "nope"
    assert error_message(b'{"detail": "missing field"}') == "missing field"
    assert error_message(b"plain " + b"y" * 500) == ("plain " + "y" * 500)[:300]


def test_repeated_names_in_tool_deltas_are_not_doubled() -> None:
    # llama.cpp's server repeats the function name (and id) in every delta.
    assembler = StreamAssembler(model="m")
    for piece in ['{"a"', ": 1", "}"]:
        delta = {"index": 0, "id": "c", "function": {"name": "calc", "arguments": piece}}
        assembler.feed({"choices": [{"delta": {"tool_calls": [delta]}}]})
    assembler.feed({"choices": [{"delta": {}, "finish_reason": "tool_calls"}]})
    final = assembler.finish(done_seen=True)
    assert [(c.name, c.arguments) for c in final.tool_calls] == [("calc", '{"a": 1}')]


def test_a_tool_call_cut_by_max_tokens_keeps_finish_reason_length() -> None:
    body = {
        "choices": [
            {
                "message": {"tool_calls": [{"function": {"name": "f", "arguments": '{"x": "'}}]},
                "finish_reason": "length",
            }
        ]
    }
    assert decode_completion(body, model="m").finish_reason == "length"
