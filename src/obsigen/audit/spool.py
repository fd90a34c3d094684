"""A durable disk spool in front of every remote audit sink: at-least-once, never in a turn's way.

``SpooledSink.emit`` appends the event to an append-only segment file under the sink's spool
directory (``data_dir/audit-spool/<sink>``) and returns once it is on disk; a background task
reads the segments in order, hands batches to the sink's ``BatchSender`` and acknowledges a
batch only after the sender returned. A sender that fails is retried with exponential backoff
(capped, jittered) for as long as it takes; the events wait on disk, also across restarts:
whatever a process leaves behind, the next one delivers. Nothing is thrown away: when the
spool reaches its size limit, ``emit`` raises ``SpoolFull`` (and logs it as critical) instead
of dropping the event, and lines that can never be delivered (a torn write of a crashed
process, a corrupt line) go to ``dead-letter.jsonl`` beside the segments, with a log error.

Layout of a spool directory::

    <time_ns>-<pid>-<random>.seg   append-only JSON Lines, one event per line (owner-only)
    <segment>.seg.ack              how far the segment has been delivered (a byte offset)
    deliver.lock                   flock: one process at a time delivers this directory
    dead-letter.jsonl              what could not be delivered, with the reason

A writer holds an exclusive ``flock`` on the segment it appends to; a segment nobody holds is
sealed (its writer rolled over, closed or died), so once delivered to its end it is deleted.
Any number of processes may append to one directory; the one holding ``deliver.lock``
delivers every segment in it, and another takes over when it exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import logging
import os
import random
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any, Literal, Protocol, TypeVar, runtime_checkable

from obsigen.audit.events import AuditEvent
from obsigen.cancellation import cancel_and_wait

logger = logging.getLogger("obsigen.audit.spool")

FsyncPolicy = Literal["always", "interval", "never"]
SEGMENT_SUFFIX = ".seg"
ACK_SUFFIX = ".ack"
DEAD_LETTER = "dead-letter.jsonl"
_LOCK_FILE = "deliver.lock"
_PENDING_SUFFIX = ".tmp"
_STALE_PENDING_S = 60.0
# A full spool refuses every event; one critical line a minute is an alert, not a flood.
_FULL_LOG_EVERY_S = 60.0

T = TypeVar("T")


class AuditSinkError(RuntimeError):
    """An audit sink could not take an event; the message says which sink and why."""


class SpoolFull(AuditSinkError):
    """The spool reached its size limit: the event was refused, not dropped."""


class SpoolClosed(AuditSinkError):
    """The sink was closed; an event after that has nowhere to go."""


class PermanentDeliveryError(Exception):
    """A sender's verdict that this batch can never be delivered (not merely "not now").

    The spool moves the batch to the dead-letter file and logs an error instead of retrying
    it forever in front of every later event.
    """


class DeliveryError(Exception):
    """A sender failed to deliver a batch; the spool retries it later."""


@runtime_checkable
class BatchSender(Protocol):
    """Delivers batches of event JSON objects (``AuditEvent.to_json()``) to one destination.

    ``send`` returns only once the destination has the whole batch, and raises otherwise; it
    may be called again with the same events after a failure (at-least-once: receivers
    deduplicate by ``event_id``).
    """

    @property
    def target(self) -> str:
        """Where events go, for logs and status (no credentials)."""
        ...

    async def send(self, records: Sequence[Mapping[str, Any]]) -> None: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class SpoolPolicy:
    """Limits and timings of one spool. The defaults suit production; tests shorten them."""

    # Disk: the segments together never exceed max_bytes (emit raises SpoolFull instead).
    max_bytes: int = 1 << 30
    segment_bytes: int = 4 << 20
    # "always": an emit returns after fsync (survives power loss); "interval": fsync at most
    # every fsync_interval_s (a crash of the host may lose that much of the copy; the
    # database keeps the record); "never": leave it to the OS (tests, tmpfs).
    fsync: FsyncPolicy = "always"
    fsync_interval_s: float = 1.0
    # The bound on an emit: the spool write, never the remote sink. A shared disk under load
    # has fsyncs past a second; five is still "stalled" for anything a person waits on.
    emit_timeout_s: float = 5.0
    # One delivery attempt: at most this many events / bytes, at most attempt_timeout_s.
    batch_events: int = 500
    batch_bytes: int = 4 << 20
    attempt_timeout_s: float = 30.0
    # Retry delays double from initial_backoff_s up to max_backoff_s (with jitter).
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 60.0
    # How often an idle deliverer looks for segments other processes wrote.
    poll_s: float = 2.0
    # aclose delivers what it can for at most this long; the rest stays spooled.
    close_timeout_s: float = 5.0
    # Usage (share of max_bytes) at which an error is logged, before the spool is full.
    warn_ratio: float = 0.8

    def __post_init__(self) -> None:
        if self.max_bytes <= 0 or self.segment_bytes <= 0 or self.batch_bytes <= 0:
            raise ValueError("spool sizes must be positive")
        if self.batch_events <= 0:
            raise ValueError("spool batch_events must be positive")
        if self.fsync not in ("always", "interval", "never"):
            raise ValueError("spool fsync must be 'always', 'interval' or 'never'")
        timings = (
            self.fsync_interval_s,
            self.emit_timeout_s,
            self.attempt_timeout_s,
            self.initial_backoff_s,
            self.max_backoff_s,
            self.poll_s,
        )
        if min(timings) <= 0 or self.close_timeout_s < 0:
            raise ValueError("spool timings must be positive")
        if self.max_backoff_s < self.initial_backoff_s:
            raise ValueError("spool max_backoff_s must not be below initial_backoff_s")

    def backoff(self, failures: int) -> float:
        """The delay after ``failures`` consecutive failures: doubling, capped, jittered.

        Equal jitter (half fixed, half random) keeps many Obsigen hosts that lost the same
        SIEM from retrying in lockstep, and never waits less than half the nominal delay.
        """
        nominal = min(
            self.max_backoff_s, self.initial_backoff_s * 2.0 ** min(max(failures - 1, 0), 32)
        )
        jitter: float = random.uniform(0, nominal / 2)  # noqa: S311 - jitter, not a secret
        return nominal / 2 + jitter


@dataclass(frozen=True, slots=True)
class Batch:
    """Events read from one segment, ``start``..``end`` (byte offsets) of it."""

    segment: str
    start: int
    end: int
    records: list[dict[str, Any]]

    @property
    def event_ids(self) -> list[str]:
        return [str(record.get("event_id", "")) for record in self.records]


@dataclass(slots=True)
class SpoolStatus:
    """What a health check or an operator needs to know about one spooled sink."""

    name: str
    target: str
    directory: Path
    delivering: bool = False
    spooled_bytes: int = 0
    max_bytes: int = 0
    delivered_events: int = 0
    delivered_batches: int = 0
    failed_attempts: int = 0
    consecutive_failures: int = 0
    down_since: float | None = None  # time.time() of the first failure in a row
    last_error: str = ""
    last_delivery: float | None = None
    dead_lettered: int = 0
    refused_full: int = 0

    @property
    def healthy(self) -> bool:
        return self.consecutive_failures == 0 and self.refused_full == 0

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "target": self.target,
            "directory": str(self.directory),
            "delivering": self.delivering,
            "spooled_bytes": self.spooled_bytes,
            "max_bytes": self.max_bytes,
            "delivered_events": self.delivered_events,
            "failed_attempts": self.failed_attempts,
            "consecutive_failures": self.consecutive_failures,
            "down_since": self.down_since,
            "last_error": self.last_error,
            "dead_lettered": self.dead_lettered,
            "refused_full": self.refused_full,
        }


def encode_event(event: AuditEvent) -> bytes:
    # ASCII-escaped, like the file sink: one event is always exactly one line.
    try:
        text = json.dumps(event.to_json(), separators=(",", ":"), allow_nan=False)
    except ValueError as exc:
        raise AuditSinkError(f"audit event {event.event_id} has no JSON form: {exc}") from None
    return text.encode("ascii") + b"\n"


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


class DiskSpool:
    """The files of one spool. Blocking: the sink calls it from its own worker threads.

    Appends come from one thread and reads/acknowledgements from another; they share only
    the byte count, under a lock.
    """

    def __init__(self, directory: Path, policy: SpoolPolicy) -> None:
        self.directory = directory
        self._policy = policy
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        # The spool holds tenant data (prompts, tool calls) until delivered: owner-only.
        directory.chmod(0o700)
        self._size_lock = threading.Lock()
        self._bytes = 0
        self._warned = False
        # Writer side.
        self._fd: int | None = None
        self._segment: str | None = None
        self._segment_size = 0
        self._dirty = False
        self._last_fsync = time.monotonic()
        # Reader side.
        self._lock_fd: int | None = None
        self._cursors: dict[str, int] = {}
        self.rescan()

    # --- size accounting -------------------------------------------------------------------

    @property
    def used_bytes(self) -> int:
        with self._size_lock:
            return self._bytes

    def rescan(self) -> int:
        """Recount the segments on disk (other processes append to them too)."""
        total = 0
        for path in self.directory.glob(f"*{SEGMENT_SUFFIX}"):
            with contextlib.suppress(FileNotFoundError):
                total += path.stat().st_size
        with self._size_lock:
            self._bytes = total
        return total

    def _reserve(self, size: int) -> None:
        with self._size_lock:
            if self._bytes + size > self._policy.max_bytes:
                raise SpoolFull(
                    f"audit spool {self.directory} is full ({self._bytes} of "
                    f"{self._policy.max_bytes} bytes): the sink has been unreachable too long; "
                    "the event was refused, not dropped"
                )
            self._bytes += size
            usage = self._bytes / self._policy.max_bytes
        if usage >= self._policy.warn_ratio and not self._warned:
            self._warned = True
            logger.error(
                "audit spool %s is %.0f%% full; events will be refused when it is full",
                self.directory,
                usage * 100,
            )
        elif usage < self._policy.warn_ratio / 2:
            self._warned = False

    def _release(self, size: int) -> None:
        with self._size_lock:
            self._bytes = max(0, self._bytes - size)

    # --- writer ----------------------------------------------------------------------------

    def append(self, data: bytes) -> None:
        """Append whole lines; on return they are in the file (and on disk with fsync=always)."""
        self._reserve(len(data))
        try:
            if self._fd is None or self._segment_size >= self._policy.segment_bytes:
                self._roll()
            assert self._fd is not None
            self._write_all(self._fd, data)
        except BaseException:
            self._release(len(data))
            raise
        self._segment_size += len(data)
        self._dirty = True
        if self._policy.fsync == "always":
            self.sync()
        elif self._policy.fsync == "interval":
            self.sync_if_due()

    def _write_all(self, fd: int, data: bytes) -> None:
        view = memoryview(data)
        written = 0
        try:
            while written < len(view):
                written += os.write(fd, view[written:])
        except OSError:
            # A partly written line would merge with the next one: cut it off and start a
            # fresh segment, so the file holds only whole lines.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, self._segment_size)
            self._close_segment()
            raise

    def _roll(self) -> None:
        self._close_segment()
        name = f"{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(4)}{SEGMENT_SUFFIX}"
        pending = self.directory / (name + _PENDING_SUFFIX)
        fd = os.open(pending, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        try:
            # Locked before it gets its real name: a deliverer never sees it unowned and empty.
            fcntl.flock(fd, fcntl.LOCK_EX)
            pending.rename(self.directory / name)
            if self._policy.fsync == "always":
                _fsync_dir(self.directory)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                pending.unlink()
            raise
        self._fd, self._segment, self._segment_size = fd, name, 0

    def sync(self) -> None:
        if self._fd is not None and self._dirty:
            os.fsync(self._fd)
        self._dirty = False
        self._last_fsync = time.monotonic()

    def sync_if_due(self) -> None:
        if self._dirty and time.monotonic() - self._last_fsync >= self._policy.fsync_interval_s:
            self.sync()

    def _close_segment(self) -> None:
        if self._fd is None:
            return
        fd, self._fd, self._segment = self._fd, None, None
        try:
            if self._dirty and self._policy.fsync != "never":
                os.fsync(fd)
        finally:
            self._dirty = False
            # Closing releases the flock: the segment is sealed.
            os.close(fd)

    def close_writer(self) -> None:
        self._close_segment()

    # --- reader ----------------------------------------------------------------------------

    def try_lock_delivery(self) -> bool:
        if self._lock_fd is not None:
            return True
        fd = os.open(self.directory / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        if _try_flock(fd):
            self._lock_fd = fd
            return True
        os.close(fd)
        return False

    def release_delivery(self) -> None:
        if self._lock_fd is not None:
            fd, self._lock_fd = self._lock_fd, None
            os.close(fd)

    def segments(self) -> list[str]:
        return sorted(path.name for path in self.directory.glob(f"*{SEGMENT_SUFFIX}"))

    def _cursor(self, segment: str) -> int:
        if segment not in self._cursors:
            try:
                text = (self.directory / (segment + ACK_SUFFIX)).read_text(encoding="ascii")
                self._cursors[segment] = int(text.strip() or 0)
            except FileNotFoundError:
                self._cursors[segment] = 0
            except ValueError:
                # A torn acknowledgement: start over; duplicates are allowed, loss is not.
                self._cursors[segment] = 0
        return self._cursors[segment]

    def read_batch(self) -> Batch | None:
        """The next undelivered events, oldest segment first; None when all are delivered."""
        self._clean_leftovers()
        for segment in self.segments():
            batch = self._read_segment(segment)
            if batch is not None:
                return batch
        self.rescan()
        return None

    def _read_segment(self, segment: str) -> Batch | None:
        path = self.directory / segment
        start = self._cursor(segment)
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            self._forget(segment)
            return None
        with handle:
            size = os.fstat(handle.fileno()).st_size
            if start < size:
                lines, end = self._read_lines(handle, start, size)
                if lines:
                    return self._parse(segment, start, end, lines)
            # Nothing complete left. Sealed (no writer holds it)? Then it is finished.
            if not _try_flock(handle.fileno()):
                return None
            size = os.fstat(handle.fileno()).st_size
            if start < size:
                lines, end = self._read_lines(handle, start, size)
                if lines:
                    return self._parse(segment, start, end, lines)
                # The writer died mid-line: that emit never returned, but keep the bytes.
                handle.seek(start)
                self._dead_letter(segment, "torn write (the writer stopped mid-line)", [])
                self._append_dead_raw(segment, handle.read(size - start))
        self._delete(segment)
        return None

    def _read_lines(self, handle: IO[bytes], start: int, size: int) -> tuple[list[bytes], int]:
        handle.seek(start)
        data = b""
        newline = -1
        # Read batch_bytes at a time until at least one whole line (a line may be longer).
        while newline < 0 and start + len(data) < size:
            chunk = handle.read(min(self._policy.batch_bytes, size - start - len(data)))
            if not chunk:
                break
            data += chunk
            newline = data.rfind(b"\n")
        if newline < 0:
            return [], start
        lines = data[: newline + 1].split(b"\n")[:-1][: self._policy.batch_events]
        end = start + sum(len(line) + 1 for line in lines)
        return lines, end

    def _parse(self, segment: str, start: int, end: int, lines: list[bytes]) -> Batch:
        records: list[dict[str, Any]] = []
        corrupt: list[bytes] = []
        for line in lines:
            try:
                value = json.loads(line)
            except ValueError:
                value = None
            if isinstance(value, dict):
                records.append(value)
            else:
                corrupt.append(line)
        if corrupt:
            self._dead_letter(segment, "corrupt line in the spool (not a JSON object)", [])
            for line in corrupt:
                self._append_dead_raw(segment, line)
        return Batch(segment, start, end, records)

    def ack(self, batch: Batch) -> None:
        """Record that ``batch`` was delivered; a segment delivered to its end is deleted."""
        self._cursors[batch.segment] = batch.end
        ack_path = self.directory / (batch.segment + ACK_SUFFIX)
        tmp = ack_path.with_name(ack_path.name + _PENDING_SUFFIX)
        # No fsync: a lost acknowledgement only means the batch is delivered again.
        tmp.write_text(str(batch.end), encoding="ascii")
        tmp.replace(ack_path)
        path = self.directory / batch.segment
        with contextlib.suppress(FileNotFoundError), path.open("rb") as handle:
            if os.fstat(handle.fileno()).st_size == batch.end and _try_flock(handle.fileno()):
                self._delete(batch.segment)

    def dead_letter(self, batch: Batch, reason: str) -> None:
        self._dead_letter(batch.segment, reason, batch.records)

    def _dead_letter(self, segment: str, reason: str, records: list[dict[str, Any]]) -> None:
        logger.error(
            "audit spool %s: %s in %s; kept in %s",
            self.directory,
            reason,
            segment,
            self.directory / DEAD_LETTER,
        )
        lines = [
            json.dumps({"segment": segment, "reason": reason, "event": record}) + "\n"
            for record in records
        ]
        if not records:
            lines = [json.dumps({"segment": segment, "reason": reason}) + "\n"]
        self._write_dead("".join(lines).encode())

    def _append_dead_raw(self, segment: str, raw: bytes) -> None:
        entry = {"segment": segment, "raw": raw.decode("utf-8", "backslashreplace")}
        self._write_dead((json.dumps(entry) + "\n").encode())

    def _write_dead(self, data: bytes) -> None:
        fd = os.open(self.directory / DEAD_LETTER, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, data)
            if self._policy.fsync != "never":
                os.fsync(fd)
        finally:
            os.close(fd)

    def _delete(self, segment: str) -> None:
        path = self.directory / segment
        size = 0
        with contextlib.suppress(FileNotFoundError):
            size = path.stat().st_size
            path.unlink()
        with contextlib.suppress(FileNotFoundError):
            (self.directory / (segment + ACK_SUFFIX)).unlink()
        self._release(size)
        self._forget(segment)

    def _forget(self, segment: str) -> None:
        self._cursors.pop(segment, None)

    def _clean_leftovers(self) -> None:
        # A segment created by a process that died before naming it never held an event.
        # Old ones only: a writer opens the file a moment before it locks it.
        stale = time.time() - _STALE_PENDING_S
        for pending in self.directory.glob(f"*{SEGMENT_SUFFIX}{_PENDING_SUFFIX}"):
            try:
                fd = os.open(pending, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                if os.fstat(fd).st_mtime < stale and _try_flock(fd):
                    pending.unlink(missing_ok=True)
            finally:
                os.close(fd)
        live = set(self.segments())
        for ack in self.directory.glob(f"*{SEGMENT_SUFFIX}{ACK_SUFFIX}"):
            if ack.name[: -len(ACK_SUFFIX)] not in live:
                ack.unlink(missing_ok=True)

    def pending_events(self) -> int:
        """Undelivered complete lines on disk (reads the files: for tests and operators)."""
        count = 0
        for segment in self.segments():
            start = self._cursor(segment)
            with (
                contextlib.suppress(FileNotFoundError),
                (self.directory / segment).open("rb") as handle,
            ):
                handle.seek(start)
                while chunk := handle.read(1 << 20):
                    count += chunk.count(b"\n")
        return count

    def pending_bytes(self) -> int:
        """Bytes not yet delivered (file sizes against acknowledgements: cheap)."""
        total = 0
        for segment in self.segments():
            with contextlib.suppress(FileNotFoundError):
                total += max(0, (self.directory / segment).stat().st_size - self._cursor(segment))
        return total


def _consume_exception(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


class SpooledSink:
    """An ``AuditSink`` that spools each event on disk and delivers it in the background.

    ``emit`` costs one local append (and fsync), bounded by ``policy.emit_timeout_s``
    whatever the remote end does. Start delivery with ``start()`` (the first ``emit`` also
    starts it); ``aclose()`` delivers for at most ``policy.close_timeout_s`` and leaves the
    rest on disk for the next process.
    """

    def __init__(
        self,
        name: str,
        directory: Path,
        sender: BatchSender,
        policy: SpoolPolicy | None = None,
    ) -> None:
        self.name = name
        self._policy = policy or SpoolPolicy()
        self._sender = sender
        self._spool = DiskSpool(directory, self._policy)
        # Separate threads: an append never waits behind a read, and neither waits for the
        # sender, whose own threads may hang on a dead network for attempt_timeout_s.
        self._writer = ThreadPoolExecutor(1, thread_name_prefix=f"audit-spool-w-{name}")
        self._reader = ThreadPoolExecutor(1, thread_name_prefix=f"audit-spool-r-{name}")
        self._queue: list[tuple[bytes, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._stopping: asyncio.Event | None = None
        self._closing = False
        self._closed = False
        self._full_logged = -_FULL_LOG_EVERY_S
        self._status = SpoolStatus(
            name=name,
            target=sender.target,
            directory=directory,
            max_bytes=self._policy.max_bytes,
        )

    @property
    def directory(self) -> Path:
        return self._spool.directory

    @property
    def policy(self) -> SpoolPolicy:
        return self._policy

    @property
    def sender(self) -> BatchSender:
        return self._sender

    def status(self) -> SpoolStatus:
        self._status.spooled_bytes = self._spool.used_bytes
        return replace(self._status)

    def pending_events(self) -> int:
        return self._spool.pending_events()

    # --- emit ------------------------------------------------------------------------------

    async def emit(self, event: AuditEvent) -> None:
        if self._closed:
            raise SpoolClosed(f"audit sink {self.name} is closed")
        line = encode_event(event)
        self.start()
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.add_done_callback(_consume_exception)
        self._queue.append((line, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_queue())
        try:
            # Shielded: a caller that gives up does not cancel the write of other callers'
            # events queued with it.
            await asyncio.wait_for(asyncio.shield(done), self._policy.emit_timeout_s)
        except TimeoutError:
            raise AuditSinkError(
                f"audit sink {self.name}: the spool write took longer than "
                f"{self._policy.emit_timeout_s} s (disk stalled?); the event may still be "
                "written and delivered"
            ) from None

    async def _flush_queue(self) -> None:
        # Group commit: everything queued while one write (and fsync) runs goes in the next.
        loop = asyncio.get_running_loop()
        while self._queue:
            group, self._queue = self._queue, []
            data = b"".join(line for line, _ in group)
            try:
                await loop.run_in_executor(self._writer, self._spool.append, data)
            except SpoolFull as exc:
                self._status.refused_full += len(group)
                now = time.monotonic()
                if now - self._full_logged >= _FULL_LOG_EVERY_S:
                    self._full_logged = now
                    logger.critical(
                        "audit sink %s: %s (unreachable since %s: %s)",
                        self.name,
                        exc,
                        _when(self._status.down_since),
                        self._status.last_error or "no error recorded",
                    )
                _fail(group, exc)
                continue
            except Exception as exc:  # noqa: BLE001 - not swallowed: every emitter raises it
                _fail(group, AuditSinkError(f"audit sink {self.name}: spool write failed: {exc}"))
                continue
            for _, future in group:
                if not future.done():
                    future.set_result(None)
            if self._wake is not None:
                self._wake.set()

    # --- delivery --------------------------------------------------------------------------

    def start(self) -> None:
        """Start background delivery (idempotent); needs a running event loop."""
        if self._task is not None or self._closed:
            return
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task = asyncio.create_task(self._deliver_forever(), name=f"audit-spool-{self.name}")

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._reader, fn, *args)

    async def _deliver_forever(self) -> None:
        try:
            await self._deliver()
        except asyncio.CancelledError:
            raise
        except Exception:
            # Never silent: the events stay spooled and the next start resumes them.
            logger.exception("audit sink %s: delivery stopped unexpectedly", self.name)
            raise

    async def _deliver(self) -> None:
        assert self._wake is not None
        failures = 0
        batch: Batch | None = None
        while True:
            try:
                if batch is None:
                    self._wake.clear()
                    batch = await self._next_batch()
            except OSError as exc:
                # The spool's own disk failed (permissions, I/O error): keep trying, loudly.
                failures += 1
                logger.error(  # noqa: TRY400 - the errno says it; a traceback per retry would flood
                    "audit sink %s: cannot read the spool: %s", self.name, exc
                )
                if self._closing:
                    return
                await self._sleep(self._policy.backoff(failures))
                continue
            if batch is None:
                if self._closing:
                    return
                await self._idle()
                continue
            try:
                await self._attempt(batch)
            except Exception as exc:  # noqa: BLE001 - retried; recorded in status and logs
                failures += 1
                self._failed(exc, failures)
                if self._closing:
                    return
                await self._sleep(self._policy.backoff(failures))
                continue
            self._delivered(batch, failures)
            failures = 0
            batch = None

    async def _next_batch(self) -> Batch | None:
        if not self._status.delivering:
            self._status.delivering = await self._run(self._spool.try_lock_delivery)
            if not self._status.delivering:
                # Another process delivers this spool (take over when it exits); only it
                # deletes segments, so recount what is left for our size limit.
                await self._run(self._spool.rescan)
                return None
        if self._policy.fsync == "interval" and not self._closed:
            await asyncio.get_running_loop().run_in_executor(self._writer, self._spool.sync_if_due)
        return await self._run(self._spool.read_batch)

    async def _attempt(self, batch: Batch) -> None:
        if batch.records:
            try:
                await asyncio.wait_for(
                    self._sender.send(batch.records), self._policy.attempt_timeout_s
                )
            except PermanentDeliveryError as exc:
                self._status.dead_lettered += len(batch.records)
                await self._run(self._spool.dead_letter, batch, f"refused by the sink: {exc}")
        # Only after the sender returned: a crash before this line means a duplicate, never
        # a loss.
        await self._run(self._spool.ack, batch)

    async def _idle(self) -> None:
        assert self._wake is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self._policy.poll_s)

    async def _sleep(self, seconds: float) -> None:
        # A retry delay ends early only for shutdown: new events must not speed up the
        # hammering of a sink that is down.
        assert self._stopping is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    def _failed(self, exc: BaseException, failures: int) -> None:
        status = self._status
        status.failed_attempts += 1
        status.consecutive_failures = failures
        status.last_error = _describe(exc)
        if failures == 1:
            status.down_since = time.time()
            logger.warning(
                "audit sink %s (%s) unreachable: %s; events are spooled in %s and retried",
                self.name,
                self._sender.target,
                status.last_error,
                self.directory,
            )
        else:
            logger.debug("audit sink %s: attempt %d failed: %s", self.name, failures, exc)

    def _delivered(self, batch: Batch, failures: int) -> None:
        status = self._status
        if failures:
            logger.warning(
                "audit sink %s reachable again after %d failed attempts (%.1f s)",
                self.name,
                failures,
                time.time() - (status.down_since or time.time()),
            )
        status.delivered_events += len(batch.records)
        status.delivered_batches += 1
        status.consecutive_failures = 0
        status.down_since = None
        status.last_delivery = time.time()

    # --- shutdown --------------------------------------------------------------------------

    async def flush(self, timeout_s: float) -> bool:
        """Wait until everything spooled so far is delivered; False when time ran out."""
        self.start()
        deadline = time.monotonic() + timeout_s
        while True:
            idle = self._flusher is None or self._flusher.done()
            if idle and await self._run(self._spool.pending_bytes) == 0:
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        if self._flusher is not None:
            # Its emitters hear about any failure; here it only has to have finished.
            await asyncio.wait([self._flusher], timeout=self._policy.emit_timeout_s)
        # Seal the last segment first, so the final delivery can also delete it.
        sealed = loop.run_in_executor(self._writer, self._spool.close_writer)
        await asyncio.wait([sealed], timeout=self._policy.emit_timeout_s)
        self._closing = True
        if self._task is not None:
            assert self._stopping is not None
            assert self._wake is not None
            self._stopping.set()
            self._wake.set()
            await asyncio.wait([self._task], timeout=self._policy.close_timeout_s)
            if not self._task.done():
                # Stuck in a send: abandon it; that batch is still spooled (maybe a duplicate).
                with contextlib.suppress(Exception):
                    await cancel_and_wait(self._task)
            if not self._task.cancelled():
                self._task.exception()  # already logged by the task; mark it seen
        await self._sender.aclose()
        # The reader may still be finishing a read or an acknowledgement (milliseconds).
        await loop.run_in_executor(None, self._reader.shutdown, True)
        self._writer.shutdown(wait=False)
        self._spool.release_delivery()
        left = self._spool.pending_bytes()
        if left:
            logger.warning(
                "audit sink %s closed with %d bytes of events still spooled in %s; the next "
                "start delivers them",
                self.name,
                left,
                self.directory,
            )


def _fail(group: list[tuple[bytes, asyncio.Future[None]]], exc: BaseException) -> None:
    for _, future in group:
        if not future.done():
            future.set_exception(exc)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _when(moment: float | None) -> str:
    if moment is None:
        return "unknown"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))


async def run_blocking(executor: ThreadPoolExecutor, fn: Callable[..., T], *args: Any) -> T:
    """Run a blocking sender call on the sender's own thread."""
    return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)
