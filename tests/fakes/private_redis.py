"""A ``redis-server`` of one test's own on a free loopback port, that the test may stop.

Tests that stop Redis or give it a password must never touch the machine's shared Redis on
6379: other tests (and other processes) use it at the same time.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(
    port: int, proc: subprocess.Popen[bytes], timeout_s: float, log: Path | None = None
) -> None:
    """Return once something listens on 127.0.0.1:``port``; fail if ``proc`` exits first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            said = log.read_text(errors="replace")[-3000:] if log else ""
            raise RuntimeError(f"process exited with {proc.returncode} before listening: {said}")
        with socket.socket() as probe:
            probe.settimeout(0.2)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def redis_server_binary() -> str | None:
    return shutil.which("redis-server")


@dataclass
class PrivateRedis:
    port: int
    proc: subprocess.Popen[bytes]
    argv: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        stop_process(self.proc)

    def kill(self) -> None:
        """SIGKILL: every client connection is reset; nothing is persisted to come back."""
        self.proc.kill()
        self.proc.wait(timeout=10)

    def restart(self) -> None:
        """Start again on the same port (empty: nothing was persisted)."""
        assert self.proc.poll() is not None, "still running"
        self.proc = subprocess.Popen(
            self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_port(self.port, self.proc, 10)


@contextlib.contextmanager
def private_redis(directory: Path, *extra_args: str) -> Iterator[PrivateRedis]:
    """Nothing persisted (no RDB, no AOF), bound to 127.0.0.1; stopped on exit."""
    binary = redis_server_binary()
    if binary is None:
        raise RuntimeError("redis-server is not installed")
    port = free_port()
    argv = (binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
            "no", "--dir", str(directory), *extra_args)  # fmt: skip
    server = PrivateRedis(
        port,
        subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        argv,
    )
    try:
        wait_for_port(port, server.proc, 10)
        yield server
    finally:
        stop_process(server.proc)
