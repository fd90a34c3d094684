"""A ``mariadbd`` of one test's own: its own datadir, loopback port and socket, that the test
may SIGKILL, SIGSTOP and start again on the same port and datadir.

Tests that stop the database must never touch the machine's shared MariaDB on 3306: other
tests (and other helpers' processes) use it at the same time.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.fakes.private_redis import free_port, stop_process

MARIADBD = "/usr/sbin/mariadbd"


def mariadb_binaries() -> tuple[str, str] | None:
    """(mariadbd, mariadb-install-db), or None where either is missing."""
    install = shutil.which("mariadb-install-db")
    daemon = MARIADBD if Path(MARIADBD).exists() else shutil.which("mariadbd")
    return (daemon, install) if daemon and install else None


@dataclass
class PrivateMariaDB:
    directory: Path
    port: int
    daemon: str
    proc: subprocess.Popen[bytes] | None = None
    starts: int = field(default=0)

    @property
    def datadir(self) -> Path:
        return self.directory / "data"

    @property
    def socket(self) -> Path:
        return self.directory / "mariadbd.sock"

    @property
    def log(self) -> Path:
        return self.directory / "mariadbd.err"

    @property
    def server_url(self) -> str:
        return f"mysql+asyncmy://root@127.0.0.1:{self.port}/"

    def start(self, timeout_s: float = 60.0) -> None:
        """Start (or start again, after a kill: InnoDB recovers the datadir) and wait until a
        client can log in."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    self.daemon, "--no-defaults", f"--datadir={self.datadir}", "--user=root",
                    "--bind-address=127.0.0.1", f"--port={self.port}", f"--socket={self.socket}",
                    f"--pid-file={self.directory / 'mariadbd.pid'}", "--skip-name-resolve",
                    "--innodb-buffer-pool-size=32M", "--innodb-log-file-size=16M",
                    "--max-connections=200", f"--log-error={self.log}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"mariadbd exited with {self.proc.returncode}: "
                    + self.log.read_text(errors="replace")[-2000:]
                )
            if self._answers():
                return
            time.sleep(0.1)
        raise TimeoutError(f"mariadbd did not answer on {self.port} in {timeout_s} s")

    def _answers(self) -> bool:
        """A MariaDB greeting arrived (the server accepts logins, not only connections)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                conn.settimeout(1)
                return len(conn.recv(64)) > 4
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush; every client connection is reset."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def freeze(self) -> None:
        """SIGSTOP: the port still accepts TCP connections (the kernel's backlog) but nothing
        answers; clients wait until their own timeouts."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGCONT)
        stop_process(self.proc)


@contextlib.contextmanager
def private_mariadb(directory: Path) -> Iterator[PrivateMariaDB]:
    """A fresh datadir (``mariadb-install-db``), root without a password on 127.0.0.1 only."""
    binaries = mariadb_binaries()
    if binaries is None:
        raise RuntimeError("mariadbd / mariadb-install-db are not installed")
    daemon, install = binaries
    directory.mkdir(parents=True, exist_ok=True)
    server = PrivateMariaDB(directory, free_port(), daemon)
    subprocess.run(
        [
            install, "--no-defaults", f"--datadir={server.datadir}", "--user=root",
            "--auth-root-authentication-method=normal", "--skip-test-db",
            "--skip-name-resolve",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )  # fmt: skip
    try:
        server.start()
        yield server
    finally:
        server.stop()
