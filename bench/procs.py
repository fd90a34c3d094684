"""Starting, watching and stopping the server processes a benchmark needs."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

LOOPBACK = "127.0.0.1"


class BenchError(RuntimeError):
    """A benchmark could not run; the message says which step failed."""


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    url: str

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def free_port() -> int:
    """A port that is free now; the short race until the server binds it is acceptable here."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def start(
    name: str, cmd: list[str], *, env: dict[str, str], log_path: Path, url: str, cwd: Path
) -> Server:
    log = log_path.open("wb")
    # A session of its own, so that stopping it also stops any workers it forked.
    process = subprocess.Popen(
        cmd,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    return Server(name=name, process=process, log_path=log_path, url=url)


def wait_ready(server: Server, path: str, timeout_s: float) -> float:
    """Poll ``path`` until it answers 200; returns the seconds it took."""
    started = time.monotonic()
    deadline = started + timeout_s
    with httpx.Client(base_url=server.url, timeout=2.0, trust_env=False) as client:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise BenchError(
                    f"{server.name} exited with {server.process.returncode} while starting:\n"
                    f"{server.log_tail()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if client.get(path).status_code == 200:
                    return time.monotonic() - started
            time.sleep(0.2)
    raise BenchError(f"{server.name} not ready after {timeout_s:.0f} s:\n{server.log_tail()}")


def start_ready(
    name: str,
    cmd: list[str],
    *,
    env: dict[str, str],
    log_path: Path,
    url: str,
    cwd: Path,
    ready_path: str,
    timeout_s: float,
) -> Server:
    """Start a server and wait until ``ready_path`` answers 200; stop it again if it never does."""
    server = start(name, cmd, env=env, log_path=log_path, url=url, cwd=cwd)
    try:
        wait_ready(server, ready_path, timeout_s)
    except BaseException:
        stop(server)
        raise
    return server


def stop(server: Server, grace_s: float = 10.0) -> None:
    if server.process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.process.pid, signal.SIGTERM)
    try:
        server.process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=grace_s)


def run_checked(cmd: list[str], *, env: dict[str, str], cwd: Path, timeout_s: float) -> str:
    """Run a set-up command; its stdout, or a BenchError that shows what it printed."""
    try:
        done = subprocess.run(
            cmd,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{' '.join(cmd)} took more than {timeout_s:.0f} s") from exc
    if done.returncode != 0:
        raise BenchError(
            f"{' '.join(cmd)} exited with {done.returncode}:\n{done.stdout}\n{done.stderr}"
        )
    return done.stdout


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    """The current environment without proxy settings and without the caller's OBSIGEN_*.

    Loopback is the only target: a proxy variable must never route a request elsewhere, and
    a developer's own Obsigen configuration must not leak into the measured one.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.upper().endswith("_PROXY") and not key.startswith("OBSIGEN_")
    }
    env["NO_PROXY"] = "*"
    env["no_proxy"] = "*"
    env.update(extra)
    return env


# --- memory ---------------------------------------------------------------------------------


def _status_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS since start) of one process, in KiB; empty once it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    found = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(rest.split()[0])
    return found


def session_pids(session_id: int) -> list[int]:
    """Live processes of a session (a server started by :func:`start` and what it forked)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # The command name may hold spaces; the session id is field 6, 4th after the ")".
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == session_id:
            pids.append(int(stat.parent.name))
    return sorted(pids)


def command_line(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)[:120]


def server_memory(server: Server) -> dict[str, Any]:
    """RSS now and peak RSS (VmHWM) of each process of a server, in MiB.

    Only processes with a resident set count (a sandbox helper that already exited does not);
    ``rss_mib``/``peak_rss_mib`` are those of the main process, ``total_*`` the sums.
    """
    processes: list[dict[str, Any]] = []
    for pid in session_pids(server.process.pid):
        status = _status_kib(pid)
        if "VmRSS" not in status:
            continue
        rss = round(status["VmRSS"] / 1024, 1)
        peak = round(status.get("VmHWM", status["VmRSS"]) / 1024, 1)
        processes.append({"pid": pid, "command": command_line(pid), "rss_mib": rss,
                          "peak_rss_mib": peak})  # fmt: skip
    main = next((p for p in processes if p["pid"] == server.process.pid), None)
    return {
        "processes": len(processes),
        "rss_mib": main["rss_mib"] if main else None,
        "peak_rss_mib": main["peak_rss_mib"] if main else None,
        "total_rss_mib": round(sum(p["rss_mib"] for p in processes), 1),
        "total_peak_rss_mib": round(sum(p["peak_rss_mib"] for p in processes), 1),
        "detail": processes,
    }
