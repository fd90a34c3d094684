"""The recorder: every sink gets every event in order, batches where a sink takes them, and an
event nobody could keep is never silent."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from obsigen.audit.canonical import NotCanonicalisable
from obsigen.audit.events import AuditEvent
from obsigen.audit.recorder import AuditRecorder


def event(n: int, **data: Any) -> AuditEvent:
    return AuditEvent(
        type="chat.prompt",
        tenant_id="t1",
        actor={"kind": "user", "id": "u1"},
        outcome="success",
        data={"n": n, **data},
    )


class OneByOne:
    """A sink with ``emit`` only, as the spooled remote sinks are."""

    name = "one-by-one"

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[list[int]] = []
        self.fail = fail

    async def emit(self, event: AuditEvent) -> None:
        if self.fail:
            raise OSError("disk full")
        self.calls.append([event.data["n"]])

    async def aclose(self) -> None:
        return None


class Batching(OneByOne):
    name = "batching"

    async def emit_many(self, events: Sequence[AuditEvent]) -> None:
        if self.fail:
            raise OSError("disk full")
        self.calls.append([event.data["n"] for event in events])


async def test_a_batch_goes_whole_to_batching_sinks_and_in_order_to_the_others() -> None:
    batching, single = Batching(), OneByOne()
    recorder = AuditRecorder([batching, single])

    await recorder.record_many([event(1), event(2), event(3)])
    await recorder.record(event(4))

    assert batching.calls == [[1, 2, 3], [4]]
    assert single.calls == [[1], [2], [3], [4]]


async def test_a_failing_sink_does_not_keep_the_batch_from_the_others() -> None:
    broken, healthy = Batching(fail=True), OneByOne()
    recorder = AuditRecorder([broken, healthy])

    with pytest.raises(OSError, match="disk full"):
        await recorder.record_many([event(1), event(2)])
    assert healthy.calls == [[1], [2]]


async def test_an_event_without_a_json_form_refuses_the_whole_batch_before_any_sink() -> None:
    batching, single = Batching(), OneByOne()
    recorder = AuditRecorder([batching, single])

    with pytest.raises(NotCanonicalisable):
        await recorder.record_many([event(1), event(2, score=float("nan"))])
    assert batching.calls == []
    assert single.calls == []


async def test_an_empty_batch_writes_nothing() -> None:
    batching = Batching()
    await AuditRecorder([batching]).record_many([])
    assert batching.calls == []
