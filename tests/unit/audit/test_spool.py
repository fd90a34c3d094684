"""The disk spool behind remote audit sinks: at-least-once, bounded emits, nothing dropped."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from obsigen.audit import spool as spool_module
from obsigen.audit.events import AuditEvent
from obsigen.audit.interfaces import AuditSink
from obsigen.audit.recorder import AuditRecorder
from obsigen.audit.spool import (
    DEAD_LETTER,
    AuditSinkError,
    BatchSender,
    PermanentDeliveryError,
    SpoolClosed,
    SpooledSink,
    SpoolFull,
    SpoolPolicy,
)

FAST = SpoolPolicy(
    fsync="never",
    initial_backoff_s=0.02,
    max_backoff_s=0.08,
    poll_s=0.05,
    close_timeout_s=1.0,
    emit_timeout_s=1.0,
    attempt_timeout_s=2.0,
)
REPO = Path(__file__).resolve().parents[3]


def event(n: int = 0, tenant_id: str = "t1") -> AuditEvent:
    return AuditEvent(
        type="chat.prompt",
        tenant_id=tenant_id,
        actor={"kind": "user", "id": "u1"},
        outcome="success",
        interaction_id=f"i{n}",
        data={"n": n},
    )


class FakeSender:
    """A destination that can be up, down, hanging, or lose the acknowledgement."""

    target = "fake://sink"

    def __init__(self) -> None:
        self.up = True
        self.hang = False
        self.fail_after_receiving = 0  # deliver, then raise: the spool must send again
        self.reject: set[str] = set()  # event ids whose batch is refused for good
        self.batches: list[list[str]] = []
        self.attempt_times: list[float] = []
        self.closed = False

    async def send(self, records: Sequence[Mapping[str, Any]]) -> None:
        self.attempt_times.append(time.monotonic())
        if self.hang:
            await asyncio.sleep(3600)
        if not self.up:
            raise ConnectionRefusedError("receiver down")
        ids = [str(r["event_id"]) for r in records]
        if self.reject & set(ids):
            raise PermanentDeliveryError("the receiver refuses this batch")
        self.batches.append(ids)
        if self.fail_after_receiving:
            self.fail_after_receiving -= 1
            raise TimeoutError("the acknowledgement was lost")

    async def aclose(self) -> None:
        self.closed = True

    def ids(self) -> set[str]:
        return {i for batch in self.batches for i in batch}

    def count(self) -> int:
        return sum(len(batch) for batch in self.batches)


async def until(predicate: Any, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.seg"))


async def test_is_an_audit_sink_and_sender_protocol(tmp_path: Path) -> None:
    sender = FakeSender()
    sink = SpooledSink("fake", tmp_path / "spool", sender, FAST)
    try:
        assert isinstance(sink, AuditSink)
        assert isinstance(sender, BatchSender)
        assert stat.S_IMODE((tmp_path / "spool").stat().st_mode) == 0o700
    finally:
        await sink.aclose()


async def test_every_event_is_delivered_in_order_and_the_spool_empties(tmp_path: Path) -> None:
    sender = FakeSender()
    sink = SpooledSink("fake", tmp_path / "spool", sender, FAST)
    sent = [event(n) for n in range(50)]
    for item in sent:
        await sink.emit(item)
    assert await sink.flush(10)
    await sink.aclose()
    delivered = [i for batch in sender.batches for i in batch]
    assert delivered == [e.event_id for e in sent]
    assert sender.closed
    # Delivered and sealed: nothing left on disk but the lock file.
    assert segments(tmp_path / "spool") == []
    assert not list((tmp_path / "spool").glob("*.ack"))


async def test_segments_roll_and_are_deleted_once_delivered(tmp_path: Path) -> None:
    sender = FakeSender()
    sender.up = False
    policy = SpoolPolicy(**{**_fields(FAST), "segment_bytes": 2048})
    sink = SpooledSink("fake", tmp_path / "spool", sender, policy)
    for n in range(40):
        await sink.emit(event(n))
    assert len(segments(tmp_path / "spool")) > 3
    for path in segments(tmp_path / "spool"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    sender.up = True
    assert await sink.flush(10)
    assert sender.count() == 40
    await sink.aclose()
    assert segments(tmp_path / "spool") == []


def _fields(policy: SpoolPolicy) -> dict[str, Any]:
    return {name: getattr(policy, name) for name in policy.__dataclass_fields__}


async def test_a_sink_that_is_down_is_retried_with_capped_backoff(tmp_path: Path) -> None:
    sender = FakeSender()
    sender.up = False
    sink = SpooledSink("fake", tmp_path / "spool", sender, FAST)
    for n in range(10):
        await sink.emit(event(n))
    await until(lambda: len(sender.attempt_times) >= 7)
    status = sink.status()
    assert status.consecutive_failures >= 6
    assert "ConnectionRefusedError: receiver down" in status.last_error
    assert status.down_since is not None
    assert status.spooled_bytes > 0
    assert not status.healthy
    gaps = [b - a for a, b in zip(sender.attempt_times, sender.attempt_times[1:], strict=False)]
    # Doubling from 20 ms, never beyond the 80 ms cap (plus scheduling slack).
    assert gaps[0] >= 0.01
    assert max(gaps) < 0.08 + 0.25
    assert max(gaps[3:]) >= 0.04
    assert sink.pending_events() == 10
    sender.up = True
    assert await sink.flush(10)
    assert sender.ids() == {e for b in sender.batches for e in b}
    assert sender.count() == 10
    assert sink.status().consecutive_failures == 0
    assert sink.status().healthy
    await sink.aclose()


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    policy = SpoolPolicy(initial_backoff_s=1.0, max_backoff_s=8.0)
    for failures, nominal in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (10, 8.0), (5000, 8.0)]:
        for _ in range(20):
            delay = policy.backoff(failures)
            assert nominal / 2 <= delay <= nominal


@pytest.mark.parametrize(
    "change",
    [
        {"fsync": "sometimes"},
        {"max_bytes": 0},
        {"initial_backoff_s": 0},
        {"initial_backoff_s": 5.0, "max_backoff_s": 1.0},
        {"batch_events": 0},
    ],
)
def test_nonsense_policies_are_refused(change: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="spool"):
        SpoolPolicy(**change)


async def test_emit_is_bounded_while_the_sink_hangs_and_close_is_bounded(tmp_path: Path) -> None:
    sender = FakeSender()
    sender.hang = True
    policy = SpoolPolicy(**{**_fields(FAST), "fsync": "always", "close_timeout_s": 0.5})
    sink = SpooledSink("fake", tmp_path / "spool", sender, policy)
    latencies = []
    sent = []
    for n in range(30):
        item = event(n)
        started = time.perf_counter()
        await sink.emit(item)
        latencies.append(time.perf_counter() - started)
        sent.append(item.event_id)
    assert max(latencies) < 0.2, latencies
    started = time.perf_counter()
    await sink.aclose()
    assert time.perf_counter() - started < 0.5 + 1.0
    with pytest.raises(SpoolClosed):
        await sink.emit(event())

    # The hanging attempt was abandoned: everything is still on disk for the next start.
    sender2 = FakeSender()
    sink2 = SpooledSink("fake", tmp_path / "spool", sender2, FAST)
    assert sink2.pending_events() == 30
    sink2.start()
    assert await sink2.flush(10)
    await sink2.aclose()
    assert [i for b in sender2.batches for i in b] == sent


async def test_lost_acknowledgements_mean_duplicates_never_losses(tmp_path: Path) -> None:
    sender = FakeSender()
    sender.fail_after_receiving = 2
    sink = SpooledSink("fake", tmp_path / "spool", sender, FAST)
    sent = set()
    for n in range(20):
        item = event(n)
        await sink.emit(item)
        sent.add(item.event_id)
    assert await sink.flush(10)
    await sink.aclose()
    assert sender.ids() == sent
    assert sender.count() > len(sent)  # at-least-once: the unacknowledged batches came again


async def test_spool_survives_a_killed_process(tmp_path: Path) -> None:
    """A process spools events (its sink down) and is SIGKILLed mid-traffic; the next
    process, on the same directory, delivers every event the first one accepted."""
    spool = tmp_path / "spool"
    script = textwrap.dedent(
        f"""
        import asyncio, json, sys
        from obsigen.audit.events import AuditEvent
        from obsigen.audit.spool import SpooledSink, SpoolPolicy

        class Down:
            target = "down://"
            async def send(self, records):
                raise ConnectionRefusedError("down")
            async def aclose(self):
                pass

        async def main():
            sink = SpooledSink("down", __import__("pathlib").Path({str(spool)!r}),
                               Down(), SpoolPolicy(fsync="always", initial_backoff_s=0.05))
            for n in range(25):
                e = AuditEvent(type="chat.prompt", tenant_id="t1",
                               actor={{"kind": "user", "id": "u1"}}, outcome="success",
                               data={{"n": n}})
                await sink.emit(e)  # returned: it is on disk
                print(e.event_id, flush=True)
            print("done", flush=True)
            await asyncio.sleep(3600)

        asyncio.run(main())
        """
    )
    proc = subprocess.Popen(  # noqa: ASYNC220 - started once; its output is read on a thread
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    accepted: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = await asyncio.to_thread(proc.stdout.readline)
            if not line or line.strip() == "done":
                break
            accepted.append(line.strip())
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
    assert len(accepted) == 25
    # A torn line, as if the process had died in the middle of a write.
    with segments(spool)[-1].open("ab") as handle:
        handle.write(b'{"event_id":"torn","time":"2026-')

    sender = FakeSender()
    sink = SpooledSink("down", spool, sender, FAST)
    sink.start()
    assert await sink.flush(10)
    await sink.aclose()
    assert sender.ids() == set(accepted)
    dead = (spool / DEAD_LETTER).read_text()
    assert "torn write" in dead
    assert '\\"event_id\\":\\"torn\\"' in dead
    assert segments(spool) == []


async def test_a_full_spool_refuses_loudly_and_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sender = FakeSender()
    sender.up = False
    policy = SpoolPolicy(**{**_fields(FAST), "max_bytes": 4096, "segment_bytes": 1024})
    sink = SpooledSink("fake", tmp_path / "spool", sender, policy)
    accepted: list[str] = []
    refused: SpoolFull | None = None
    with caplog.at_level(logging.ERROR, logger="obsigen.audit.spool"):
        for n in range(100):
            item = event(n)
            try:
                await sink.emit(item)
            except SpoolFull as exc:
                refused = exc
                break
            accepted.append(item.event_id)
    assert refused is not None
    assert "refused, not dropped" in str(refused)
    assert 0 < len(accepted) < 100
    assert any(r.levelno == logging.CRITICAL and "full" in r.getMessage() for r in caplog.records)
    assert any("% full" in r.getMessage() for r in caplog.records)  # the early warning
    assert sink.status().refused_full == 1
    assert sink.status().spooled_bytes <= 4096
    sender.up = True
    assert await sink.flush(10)
    assert sender.ids() == set(accepted)
    await sink.emit(event(1000))  # room again
    assert await sink.flush(10)
    await sink.aclose()


async def test_one_process_delivers_a_directory_and_another_takes_over(tmp_path: Path) -> None:
    first_sender, second_sender = FakeSender(), FakeSender()
    first = SpooledSink("fake", tmp_path / "spool", first_sender, FAST)
    second = SpooledSink("fake", tmp_path / "spool", second_sender, FAST)
    ids = set()
    for n in range(10):
        a, b = event(n), event(100 + n)
        await first.emit(a)
        await second.emit(b)
        ids |= {a.event_id, b.event_id}
    # The first took the delivery lock; the second's events go out through it.
    await until(lambda: first_sender.ids() == ids)
    assert first.status().delivering
    assert not second.status().delivering
    assert second_sender.batches == []
    await first.aclose()
    late = event(999)
    await second.emit(late)
    await until(lambda: late.event_id in second_sender.ids())
    assert second.status().delivering
    await second.aclose()


async def test_permanently_refused_and_corrupt_lines_go_to_the_dead_letter_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sender = FakeSender()
    sender.up = False
    policy = SpoolPolicy(**{**_fields(FAST), "batch_events": 5})
    sink = SpooledSink("fake", tmp_path / "spool", sender, policy)
    sent = [event(n) for n in range(10)]
    for item in sent[:5]:
        await sink.emit(item)
    # Corruption on disk (a bad sector, an editor): one line that is not JSON.
    sealed = segments(tmp_path / "spool")[-1]
    with sealed.open("ab") as handle:
        handle.write(b"not json at all\n")
    for item in sent[5:]:
        await sink.emit(item)
    sender.reject = {sent[0].event_id}
    with caplog.at_level(logging.ERROR, logger="obsigen.audit.spool"):
        sender.up = True
        assert await sink.flush(10)
    await sink.aclose()
    dead = [
        json.loads(line) for line in (tmp_path / "spool" / DEAD_LETTER).read_text().splitlines()
    ]
    refused = [d["event"]["event_id"] for d in dead if "event" in d]
    # The whole refused batch is kept; every other event was delivered; none is lost.
    assert refused[0] == sent[0].event_id
    assert set(refused).isdisjoint(sender.ids())
    assert set(refused) | sender.ids() == {e.event_id for e in sent}
    assert any(d.get("raw") == "not json at all" for d in dead)
    assert sink.status().dead_lettered == len(refused)
    assert any("dead-letter" in r.getMessage() for r in caplog.records)


async def test_emits_of_many_callers_share_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fsyncs = []
    real_fsync = spool_module.os.fsync

    def counting_fsync(fd: int) -> None:
        fsyncs.append(fd)
        real_fsync(fd)

    sender = FakeSender()
    # The receiver is down while the emits run: the deliverer's acknowledgements (fsynced
    # too) would otherwise interleave with the emits on a loaded host and blur the count.
    sender.up = False
    # A loaded shared disk may take seconds for one fsync: this test counts them, not times.
    policy = SpoolPolicy(**{**_fields(FAST), "fsync": "always", "emit_timeout_s": 30.0})
    sink = SpooledSink("fake", tmp_path / "spool", sender, policy)
    items = [event(n) for n in range(200)]
    monkeypatch.setattr(spool_module.os, "fsync", counting_fsync)
    await asyncio.gather(*(sink.emit(item) for item in items))
    monkeypatch.undo()
    sender.up = True
    # Group commit: 200 concurrent emits, every one durable, in a handful of fsyncs.
    assert 1 <= len(fsyncs) < 20
    assert await sink.flush(10)
    await sink.aclose()
    assert sender.ids() == {e.event_id for e in items}


async def test_an_event_without_a_json_form_is_refused(tmp_path: Path) -> None:
    sink = SpooledSink("fake", tmp_path / "spool", FakeSender(), FAST)
    bad = AuditEvent(
        type="chat.prompt", tenant_id="t1", actor={"kind": "user", "id": "u1"},
        outcome="success", data={"score": float("nan")},
    )  # fmt: skip
    with pytest.raises(AuditSinkError, match="no JSON form"):
        await sink.emit(bad)
    await sink.aclose()


class BrokenSink:
    name = "broken"

    def __init__(self) -> None:
        self.calls = 0

    async def emit(self, event: AuditEvent) -> None:
        self.calls += 1
        raise RuntimeError("the database is down")

    async def aclose(self) -> None:
        return None


async def test_recorder_gives_every_sink_the_event_and_raises_a_failure(tmp_path: Path) -> None:
    sender = FakeSender()
    broken = BrokenSink()
    spooled = SpooledSink("fake", tmp_path / "spool", sender, FAST)
    recorder = AuditRecorder([broken, spooled])
    item = event(1)
    with pytest.raises(RuntimeError, match="database is down"):
        await recorder.record(item)
    assert await recorder.flush(10)
    assert sender.ids() == {item.event_id}
    assert broken.calls == 1
    await recorder.aclose()


async def test_recorder_start_delivers_what_a_previous_process_left(tmp_path: Path) -> None:
    down = FakeSender()
    down.up = False
    first = SpooledSink("fake", tmp_path / "spool", down, FAST)
    items = [event(n) for n in range(5)]
    for item in items:
        await first.emit(item)
    await first.aclose()

    sender = FakeSender()
    recorder = AuditRecorder([SpooledSink("fake", tmp_path / "spool", sender, FAST)])
    recorder.start()  # no new event needed
    await until(lambda: sender.ids() == {e.event_id for e in items})
    await recorder.aclose()


async def test_slow_sink_does_not_slow_the_recorder(tmp_path: Path) -> None:
    slow = FakeSender()
    slow.hang = True
    policy = SpoolPolicy(**{**_fields(FAST), "close_timeout_s": 0.2})
    recorder = AuditRecorder([SpooledSink("slow", tmp_path / "spool", slow, policy)])
    started = time.perf_counter()
    for n in range(20):
        await recorder.record(event(n))
    assert time.perf_counter() - started < 20 * 0.2
    started = time.perf_counter()
    await recorder.aclose()
    assert time.perf_counter() - started < 1.5
    assert segments(tmp_path / "spool")  # still spooled
