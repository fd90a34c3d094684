"""Reading a run's output: everything up to the cap, then a stop, then draining to EOF."""

from __future__ import annotations

import asyncio

from obsigen.sandbox.stdio import read_capped


def stream(*chunks: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    for chunk in chunks:
        reader.feed_data(chunk)
    reader.feed_eof()
    return reader


async def test_under_the_cap_everything_is_kept() -> None:
    stops: list[int] = []
    captured = await read_capped(stream(b"hello ", b"world"), 100, lambda: stops.append(1))
    assert captured.text() == "hello world"
    assert not captured.truncated
    assert stops == []


async def test_past_the_cap_the_run_is_stopped_once_and_the_rest_drained() -> None:
    stops: list[int] = []
    captured = await read_capped(
        stream(b"a" * 60, b"b" * 60, b"c" * 60), 100, lambda: stops.append(1)
    )
    assert captured.data == b"a" * 60 + b"b" * 40
    assert captured.truncated
    assert stops == [1]


async def test_invalid_utf8_is_replaced_not_an_error() -> None:
    captured = await read_capped(stream(b"ok \xff\xfe"), 100, lambda: None)
    assert captured.text() == "ok \ufffd\ufffd"
