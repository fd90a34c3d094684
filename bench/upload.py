"""Streaming uploads: ``.venv/bin/python -m bench.upload [--mb 200] [--rounds 2]``.

``obsigen serve`` runs in its own process on 127.0.0.1 (embedded defaults: SQLite, local object
store) with ``files.max_upload_mb`` set to the big file's size. This process streams uploads to
``POST /api/v1/files`` as chunked multipart bodies (no Content-Length, so the server cannot
refuse from the header and must count while it streams):

- ``small``: a 2 MB PDF, the baseline;
- ``large``: a PDF of exactly the limit (200 MB by default), accepted;
- ``over_limit``: one byte more than the limit, refused with 413 while streaming.

Twice, each time against a fresh server: with the indexing of uploads queued to Redis (no
worker runs, so the server does the upload and nothing else: the streaming path), and with
the embedded default, where the server indexes each upload itself right after answering
(``with_in_process_indexing``).

For each, the server's peak resident memory during the request is read from
``/proc/<pid>/status`` (``VmHWM``, reset before each upload through ``clear_refs``; where that
is not allowed, the highest ``VmRSS`` seen by a 20 ms poller). Flat memory means the large
upload's peak is close to the small one's: ``large_over_small_peak_rss`` near 1.

Writes ``bench/results/upload.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from bench.procs import (
    LOOPBACK,
    BenchError,
    Server,
    command_line,
    free_port,
    start_ready,
    stop,
)
from bench.report import machine_info, write_suite
from bench.targets import (
    REPO,
    obsigen_bin,
    obsigen_env,
    provision_obsigen,
    start_fake_upstream,
)

MB = 1024 * 1024
CHUNK = 256 * 1024
BOUNDARY = "obsigen-bench-boundary"
# Incompressible content behind a PDF signature: the type check passes on the first bytes and
# every byte is hashed and written as in a real upload.
_BLOCK = b"%PDF-1.7\n" + os.urandom(CHUNK - 9)


def _body(size: int, name: str) -> Iterator[bytes]:
    yield (
        f"--{BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: application/pdf\r\n\r\n"
    ).encode()
    sent = 0
    while sent < size:
        piece = _BLOCK[: min(CHUNK, size - sent)]
        sent += len(piece)
        yield piece
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise BenchError(f"/proc/{pid}/status has no {field}")


class PeakRss:
    """The server's peak RSS over a window: VmHWM after a reset, or a polled VmRSS maximum."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.method = "VmHWM after clear_refs"
        self._polled = 0
        self.before_mib = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _reset_hwm(self) -> bool:
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        except OSError:
            return False
        return True

    def _poll(self) -> None:
        while not self._stop.wait(0.02):
            with contextlib.suppress(OSError, BenchError):
                self._polled = max(self._polled, _status_kib(self.pid, "VmRSS"))

    def __enter__(self) -> PeakRss:
        if not self._reset_hwm():
            self.method = "max VmRSS polled every 20 ms"
        self._polled = _status_kib(self.pid, "VmRSS")
        self.before_mib = round(self._polled / 1024, 1)
        self._stop.clear()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def peak_mib(self) -> float:
        polled = max(self._polled, _status_kib(self.pid, "VmRSS"))
        if self.method.startswith("VmHWM"):
            return round(max(polled, _status_kib(self.pid, "VmHWM")) / 1024, 1)
        return round(polled / 1024, 1)


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            # The command name may hold spaces; the parent pid follows its closing ")".
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def _upload(client: httpx.Client, key: str, size: int, name: str) -> tuple[int, float]:
    started = time.perf_counter()
    response = client.post(
        "/api/v1/files",
        content=_body(size, name),
        headers={
            "Authorization": f"Bearer {key}",
            "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
        },
    )
    elapsed = time.perf_counter() - started
    if response.status_code == 201:
        # Keep the server's disk use flat across rounds; deleting is not measured.
        file_id = response.json()["id"]
        client.delete(f"/api/v1/files/{file_id}", headers={"Authorization": f"Bearer {key}"})
    return response.status_code, elapsed


def _scenario(
    client: httpx.Client, server: Server, key: str, size: int, expect: int, rounds: int
) -> dict[str, Any]:
    peaks, deltas, seconds, method = [], [], [], ""
    for _ in range(rounds):
        with PeakRss(server.process.pid) as rss:
            status, elapsed = _upload(client, key, size, "bench.pdf")
        if status != expect:
            raise BenchError(f"upload of {size} bytes answered {status}, expected {expect}")
        peaks.append(rss.peak_mib())
        deltas.append(round(peaks[-1] - rss.before_mib, 1))
        seconds.append(elapsed)
        method = rss.method
    best = min(seconds)
    return {
        "bytes": size,
        "status": expect,
        "seconds": [round(s, 3) for s in seconds],
        "mb_per_s": round(size / MB / best, 1),
        "peak_rss_mib": max(peaks),
        "peak_rss_mib_rounds": peaks,
        # Above the RSS the server had when the upload started.
        "peak_rss_growth_mib": max(deltas),
        "rss_method": method,
    }


REDIS_URL = "redis://127.0.0.1:6379/0"


def _ratios(scenarios: dict[str, dict[str, Any]]) -> dict[str, float]:
    small = scenarios["small"]["peak_rss_mib"]
    return {
        "large_over_small_peak_rss": round(scenarios["large"]["peak_rss_mib"] / small, 3),
        "over_limit_over_small_peak_rss": round(scenarios["over_limit"]["peak_rss_mib"] / small, 3),
    }


def measure(
    workdir: Path, upstream_url: str, big_mb: int, rounds: int, queue: str | None
) -> dict[str, dict[str, Any]]:
    """The three uploads against a fresh server.

    ``queue``: send the indexing of each upload to that Redis queue (no worker takes it), so
    the server does nothing but the upload; None: the embedded default, where the server
    indexes every upload itself, right after answering.
    """
    server: Server | None = None
    name = "queued" if queue else "in-process"
    try:
        env = obsigen_env(workdir / f"obsigen-data-{name}", upstream_url)
        env["OBSIGEN_FILES__MAX_UPLOAD_MB"] = str(big_mb)
        # No sandboxes made ahead: they are child processes, and only the server's own
        # memory is read below.
        env["OBSIGEN_SANDBOX__POOL_SIZE"] = "0"
        if queue:
            env["OBSIGEN_STORAGE__REDIS_URL"] = REDIS_URL
            env["OBSIGEN_TASKS__QUEUE"] = queue
        key = provision_obsigen(env)
        port = free_port()
        server = start_ready(
            f"Obsigen ({name} indexing)",
            [str(obsigen_bin()), "serve", "--host", LOOPBACK, "--port", str(port)],
            env=env,
            log_path=workdir / f"obsigen-{name}.log",
            url=f"http://{LOOPBACK}:{port}",
            cwd=REPO,
            ready_path="/readyz",
            timeout_s=120,
        )
        children = _children(server.process.pid)
        if children:
            commands = [command_line(child) for child in children]
            raise BenchError(f"the server forked {commands}: its own RSS would not be the peak")
        limit = big_mb * MB
        with httpx.Client(base_url=server.url, timeout=300.0, trust_env=False) as client:
            _upload(client, key, 64 * 1024, "warm-up.pdf")  # imports, first connections
            small = _scenario(client, server, key, 2 * MB, 201, rounds)
            large = _scenario(client, server, key, limit, 201, rounds)
            over = _scenario(client, server, key, limit + 1, 413, rounds)
    finally:
        if server is not None:
            stop(server)
    return {"small": small, "large": large, "over_limit": over}


def _drop_queue(queue: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_timeout=10)
    try:
        keys = list(client.scan_iter(match=f"{queue}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def run(workdir: Path, big_mb: int, rounds: int) -> dict[str, Any]:
    upstream = start_fake_upstream(workdir)
    queue = f"obsigen-bench-upload-{os.urandom(4).hex()}"
    try:
        queued = measure(workdir, upstream.url, big_mb, rounds, queue)
        in_process = measure(workdir, upstream.url, big_mb, rounds, None)
    finally:
        stop(upstream)
        with contextlib.suppress(Exception):
            _drop_queue(queue)
    large = queued["large"]
    return {
        "server": "obsigen serve (uvicorn, 1 process), SQLite, local object store; indexing "
        "of uploads queued to Redis with no worker running, so the server only uploads",
        "limit_mb": big_mb,
        "rounds": rounds,
        "scenarios": queued,
        **_ratios(queued),
        "large_mb_per_s_median": round(
            large["bytes"] / MB / statistics.median(large["seconds"]), 1
        ),
        # The embedded default (no Redis): the same server also indexes every upload itself
        # right after answering, inside the measured window.
        "with_in_process_indexing": {"scenarios": in_process, **_ratios(in_process)},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.upload", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--mb", type=int, default=200, help="size of the large upload (the limit)")
    parser.add_argument("--rounds", type=int, default=2, help="uploads per scenario")
    args = parser.parse_args(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="obsigen-bench-upload-") as tmp:
        try:
            body = run(Path(tmp), args.mb, args.rounds)
        except BenchError as exc:
            print(f"upload benchmark failed: {exc}", file=sys.stderr)
            return 1
    body["duration_s"] = round(time.monotonic() - started, 1)
    path = write_suite("upload", machine_info(), body)
    for label, part in (("upload only", body), ("+ indexing", body["with_in_process_indexing"])):
        print(label)
        for name, result in part["scenarios"].items():
            print(
                f"{name:>10}: {result['bytes'] / MB:8.1f} MB  {result['mb_per_s']:7.1f} MB/s  "
                f"peak RSS {result['peak_rss_mib']:7.1f} MiB "
                f"(+{result['peak_rss_growth_mib']} MiB)  HTTP {result['status']}"
            )
        print(
            f"peak RSS large/small: {part['large_over_small_peak_rss']}, "
            f"over-limit/small: {part['over_limit_over_small_peak_rss']}"
        )
    print(f"wrote {path.relative_to(REPO)} in {body['duration_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
