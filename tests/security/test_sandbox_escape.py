"""Code runs cannot reach the network, read the host, exhaust it, or leave anything behind.

Every test runs against gVisor and against bubblewrap. With CI=true a missing backend fails the
run. Probes aim at loopback addresses only, never at any other address.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from tests.conftest import require_service

from obsigen.config import SandboxSettings
from obsigen.sandbox.cgroups import CGROUP_ROOT, PARENT
from obsigen.sandbox.detect import detect
from obsigen.sandbox.factory import build_runner
from obsigen.sandbox.interfaces import RunRequest, RunResult
from obsigen.sandbox.pool import SandboxPool

SERVICE = {"gvisor": "gVisor runsc", "bwrap": "bubblewrap"}
TIMEOUT_S = 3.0
MARKER = "obsigen-host-secret-5c1d0a"


@pytest.fixture(scope="module", params=["gvisor", "bwrap"])
async def runner(request: pytest.FixtureRequest) -> AsyncIterator[SandboxPool]:
    backend = request.param
    require_service(SERVICE[backend], detect(backend).backend == backend)
    settings = SandboxSettings(
        backend=backend,
        pool_size=1,
        timeout_s=TIMEOUT_S,
        memory_mb=256,
        pids=24,
        workspace_mb=16,
        output_kb=16,
        concurrency=4,
    )
    pool = build_runner(settings)
    assert pool is not None
    yield pool
    await pool.aclose()


async def run(runner: SandboxPool, code: str, files: dict[str, bytes] | None = None) -> RunResult:
    started = time.monotonic()
    result = await runner.run(RunRequest(code, files=files or {}))
    # Whatever the code does, the run ends within its limit plus teardown.
    assert time.monotonic() - started < TIMEOUT_S + 10
    return result


async def assert_next_run_works(runner: SandboxPool) -> None:
    result = await run(runner, "print('still fine')")
    assert (result.stdout, result.exit_code, result.killed_reason) == ("still fine\n", 0, None)


def probe_output(result: RunResult) -> dict[str, str]:
    assert result.exit_code == 0, result.stderr
    parsed: dict[str, str] = json.loads(result.stdout)
    return parsed


# --- egress ------------------------------------------------------------------------------------


@pytest.fixture
def listeners() -> Iterator[dict[str, socket.socket]]:
    """Host sockets on loopback standing for the app's port; a connection would show here."""
    made = {}
    tcp = socket.create_server(("127.0.0.1", 0))
    made["tcp4"] = tcp
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    made["udp4"] = udp
    if socket.has_ipv6:
        with contextlib.suppress(OSError):
            made["tcp6"] = socket.create_server(("::1", 0), family=socket.AF_INET6)
    for sock in made.values():
        sock.setblocking(False)
    yield made
    for sock in made.values():
        sock.close()


def nothing_arrived(listeners: dict[str, socket.socket]) -> None:
    for name, sock in listeners.items():
        receive = sock.accept if name.startswith("tcp") else lambda s=sock: s.recvfrom(100)
        with pytest.raises(BlockingIOError):
            receive()


EGRESS_PROBE = """
import json, socket
results = {}
def tcp(family, host, port):
    try:
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(1)
        s.connect((host, port))
        return "CONNECTED"
    except OSError as exc:
        return type(exc).__name__
for name, family, host, port in TARGETS:
    results[name] = tcp(family, host, port)
try:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.sendto(b"escape", ("127.0.0.1", UDP_PORT))
    results["udp"] = "sent"
except OSError as exc:
    results["udp"] = type(exc).__name__
for name, args in [("raw", (socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)),
                   ("packet", (socket.AF_PACKET, socket.SOCK_RAW, 0))]:
    try:
        socket.socket(*args)
        results[name] = "OPENED"
    except OSError as exc:
        results[name] = type(exc).__name__
with open("/proc/net/dev") as dev:
    results["interfaces"] = sorted(l.split(":")[0].strip() for l in dev.readlines()[2:])
print(json.dumps(results))
"""


async def test_no_egress_to_host_services(
    runner: SandboxPool, listeners: dict[str, socket.socket]
) -> None:
    targets = [
        ("redis", "AF_INET", "127.0.0.1", 6379),
        ("mariadb", "AF_INET", "127.0.0.1", 3306),
        ("app", "AF_INET", "127.0.0.1", listeners["tcp4"].getsockname()[1]),
        ("redis6", "AF_INET6", "::1", 6379),
    ]
    if "tcp6" in listeners:
        targets.append(("app6", "AF_INET6", "::1", listeners["tcp6"].getsockname()[1]))
    code = (
        f"TARGETS = [(n, getattr(__import__('socket'), f), h, p) for n, f, h, p in {targets!r}]\n"
        f"UDP_PORT = {listeners['udp4'].getsockname()[1]}\n" + EGRESS_PROBE
    )

    results = probe_output(await run(runner, code))

    for name, *_ in targets:
        assert results[name] != "CONNECTED", name
    assert results["raw"] != "OPENED"
    assert results["packet"] != "OPENED"
    assert results["interfaces"] == ["lo"]
    nothing_arrived(listeners)


# --- host secrets ------------------------------------------------------------------------------


SECRETS_PROBE = """
import json, os
found = {}
for path in PATHS:
    try:
        with open(path, "rb") as f:
            found[path] = f.read(4096).decode(errors="replace")
    except OSError as exc:
        found[path] = "ERR " + type(exc).__name__
environ = dict(os.environ)
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                environ[pid] = f.read().decode(errors="replace")
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                environ["cmd" + pid] = f.read().decode(errors="replace")
        except OSError:
            pass
found["environ"] = json.dumps(environ)
found["pids"] = str(sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))
print(json.dumps(found))
"""


async def test_host_secrets_are_unreadable(
    runner: SandboxPool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A data dir like the app's: database and keys, readable by root on the host.
    data_dir = tmp_path / "var"
    (data_dir / "keys").mkdir(parents=True)
    (data_dir / "obsigen.db").write_text(MARKER)
    (data_dir / "keys" / "signing.pem").write_text(MARKER)
    monkeypatch.setenv("OBSIGEN_TEST_SECRET", MARKER)
    paths = [
        str(data_dir / "obsigen.db"),
        str(data_dir / "keys" / "signing.pem"),
        "/etc/shadow",
        f"/proc/{os.getpid()}/environ",
        "/proc/1/root/etc/shadow",
        str(Path.cwd() / "pyproject.toml"),
        "/root/.bash_history",
    ]

    result = await run(runner, f"PATHS = {paths!r}\n" + SECRETS_PROBE)

    assert MARKER not in result.stdout
    found = probe_output(result)
    for path in paths:
        assert found[path].startswith("ERR "), path
    assert "pytest" not in found["environ"]  # no host process is visible
    assert len(json.loads(found["pids"])) < 10


async def test_the_root_is_read_only_and_the_user_unprivileged(runner: SandboxPool) -> None:
    code = """
import json, os
out = {"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups()}
with open("/proc/self/status") as status:
    for line in status:
        if line.startswith(("CapEff", "CapPrm", "NoNewPrivs")):
            key, value = line.split(":")
            out[key] = value.strip()
for path in ["/usr/bin/escape", "/etc/passwd", "/escape", "/input/new"]:
    try:
        open(path, "w").write("x")
        out[path] = "WROTE"
    except OSError as exc:
        out[path] = type(exc).__name__
print(json.dumps(out))
"""
    found = probe_output(await run(runner, code, {"given.txt": b"x"}))

    assert (found["uid"], found["gid"]) == (65534, 65534)
    assert int(found["CapEff"], 16) == 0
    assert int(found["CapPrm"], 16) == 0
    for path in ["/usr/bin/escape", "/etc/passwd", "/escape", "/input/new"]:
        assert found[path] != "WROTE", path


# --- resource exhaustion ----------------------------------------------------------------------


async def test_fork_bomb_is_contained(runner: SandboxPool) -> None:
    code = """
import os
try:
    while True:
        os.fork()
except OSError as exc:
    print("fork refused:", exc.errno, flush=True)
    os._exit(3)
"""
    result = await run(runner, code)

    contained = "fork refused: 11" in result.stdout or result.killed_reason in ("memory", "timeout")
    assert contained, result
    await assert_next_run_works(runner)


async def test_memory_bomb_is_killed_and_reported(runner: SandboxPool) -> None:
    result = await run(runner, "hog = []\nwhile True:\n    hog.append(b'x' * (8 << 20))")

    assert result.killed_reason == "memory" or "MemoryError" in result.stderr, result
    assert result.exit_code != 0
    await assert_next_run_works(runner)


async def test_disk_fill_ends_in_a_full_workspace_not_a_full_host(runner: SandboxPool) -> None:
    free_before = shutil.disk_usage("/").free
    code = """
import os
for target in ["/workspace/fill", "/tmp/fill", "/output/fill"]:
    try:
        with open(target, "wb") as f:
            while True:
                f.write(b"x" * (1 << 20))
    except OSError as exc:
        print(target, exc.strerror, flush=True)
n = 0
try:
    while True:
        open(f"/workspace/f{n}", "w").close()
        n += 1
except OSError as exc:
    print("files", exc.strerror)
"""
    result = await run(runner, code)

    assert "/workspace/fill No space left on device" in result.stdout, result
    assert "files No space left on device" in result.stdout
    assert shutil.disk_usage("/").free > free_before - 64 * 1024 * 1024
    await assert_next_run_works(runner)


async def test_infinite_loop_is_stopped_at_the_time_limit(runner: SandboxPool) -> None:
    result = await run(runner, "while True:\n    pass")

    assert result.timed_out
    assert result.killed_reason == "timeout"
    assert TIMEOUT_S * 1000 <= result.duration_ms < (TIMEOUT_S + 2) * 1000
    await assert_next_run_works(runner)


async def test_stdout_flood_is_cut_at_the_cap(runner: SandboxPool) -> None:
    result = await run(runner, "while True:\n    print('x' * 1000)")

    assert result.killed_reason == "output_limit"
    assert result.stdout_truncated
    assert len(result.stdout) == 16 * 1024
    assert result.duration_ms < TIMEOUT_S * 1000
    await assert_next_run_works(runner)


# --- nothing persists -------------------------------------------------------------------------


async def test_a_run_cannot_see_what_the_previous_run_wrote(runner: SandboxPool) -> None:
    write = """
for path in ["/workspace/left.txt", "/tmp/left.txt", "/output/left.txt"]:
    open(path, "w").write("from run 1")
print("written")
"""
    first = await run(runner, write)
    assert first.stdout == "written\n"
    assert [a.name for a in first.artifacts] == ["left.txt"]

    second = await run(runner, "import os\nprint(sorted(os.listdir('/workspace') + "
                       "os.listdir('/tmp') + os.listdir('/output')))")  # fmt: skip

    assert second.stdout == "[]\n"


async def test_nothing_is_left_on_the_host(runner: SandboxPool) -> None:
    await run(runner, "open('/workspace/x', 'w').write('x')\nwhile True: pass")
    await run(runner, "print(1)")
    await runner.drain()
    leftovers_are_bounded()


def leftovers_are_bounded() -> None:
    instance = next(Path("/run/obsigen-sandbox").glob(f"{os.getpid()}x*"), None)
    if instance is not None:
        # Only the shared, read-only parts and the one warm sandbox remain.
        runs = [p for p in instance.iterdir() if p.name.isdigit()]
        assert len(runs) <= 1
        prefix = instance.name
        cgroups = list(CGROUP_ROOT.glob(f"*/{PARENT}/{prefix}-*")) + list(
            CGROUP_ROOT.glob(f"{PARENT}/{prefix}-*")
        )
        assert len({c.name for c in cgroups}) <= 1
    mounts = Path("/proc/self/mountinfo").read_text()
    assert mounts.count("/obsigen-sandbox/") <= 1
