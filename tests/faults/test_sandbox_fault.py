"""The sandbox of a running ``POST /api/v1/code/run`` killed from outside (SIGKILL to the
process found in the server's process tree): the run ends at once with 503 ``sandbox-failed``,
not at its wall-time limit and not as a 200 with an exit code the program never chose, and
the next run works. A program that kills itself still gets its own exit code."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from obsigen.sandbox.detect import detect
from tests.fakes.openai_upstream import FakeUpstream
from tests.faults.conftest import (
    Deployment,
    Outcome,
    assert_clear_errors,
    base_config,
    deployed,
    require_tool,
    timed,
)

WALL_TIME_S = 20.0
LONG_RUN = "import time\nprint('started', flush=True)\ntime.sleep(60)\n"
SELF_KILL = "import os, signal\nprint('bye', flush=True)\nos.kill(os.getpid(), signal.SIGKILL)\n"


def children(pid: int) -> list[int]:
    """Every descendant of ``pid``, from /proc (threads' children included)."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            with_children = task / "children"
            try:
                kids = [int(k) for k in with_children.read_text().split()]
            except OSError:
                continue
            found += kids
            todo += kids
    return found


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def stat(pid: int) -> list[str]:
    """/proc/PID/stat after the command name: [state, ppid, ...]."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def sandbox_process(backend: str) -> int | None:
    """The sandbox's outermost process in this process's tree, newest first: gVisor's sentry
    (``runsc ... boot``), or the bwrap the server started (its monitor; the bwrap below it is
    the namespace's init). With no pool, the newest is the one the run under way uses."""
    found = []
    for pid in children(os.getpid()):
        argv = cmdline(pid)
        name = Path(argv[0]).name if argv and argv[0] else ""
        fields = stat(pid)
        if len(fields) < 20:
            continue
        if (backend == "gvisor" and "runsc" in name and "boot" in argv) or (
            backend == "bwrap" and name == "bwrap" and int(fields[1]) == os.getpid()
        ):
            found.append((int(fields[19]), pid))
    return max(found)[1] if found else None


async def run_code(client: httpx.AsyncClient, d: Deployment, n: int, code: str) -> Outcome:
    return await timed(
        "code",
        n,
        code,
        lambda: client.post(
            f"{d.server.base_url}/api/v1/code/run",
            json={"language": "python", "code": code},
            headers=d.headers,
        ),
    )


@pytest.mark.parametrize("backend", ["gvisor", "bwrap"])
async def test_sandbox_killed_mid_run(
    tmp_path: Path, backend: str, upstream_server: tuple[FakeUpstream, str]
) -> None:
    found = detect()
    problem = found.gvisor_problem if backend == "gvisor" else found.bwrap_problem
    require_tool(f"the {backend} sandbox", found.backend is not None and problem is None)
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'obsigen.db'}"
    config = base_config(tmp_path / "var", database_url, upstream_server[1])
    # No sandboxes made ahead: the only one alive during the long run is the run's own.
    config["sandbox"] = {"backend": backend, "pool_size": 0, "timeout_s": WALL_TIME_S}
    async with deployed(tmp_path, config) as d:
        async with httpx.AsyncClient(timeout=WALL_TIME_S + 30) as client:
            before = await run_code(client, d, 0, "print(6 * 7)")
            assert before.status == 200, before.describe()
            assert before.body["stdout"] == "42\n", before.body

            long_run = asyncio.create_task(run_code(client, d, 1, LONG_RUN))
            deadline = time.monotonic() + 30
            victim = None
            while victim is None:
                assert time.monotonic() < deadline, "no sandbox process found"
                assert not long_run.done(), long_run.result().describe()
                await asyncio.sleep(0.2)
                victim = sandbox_process(backend)
            await asyncio.sleep(1.0)  # the program is running in it by now
            killed = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            killed_run = await long_run
            ended_after = time.monotonic() - killed

            after = await run_code(client, d, 2, "print(6 * 7)")
            # A program that kills itself is the program's business: its own exit code.
            suicide = await run_code(client, d, 3, SELF_KILL)
        d.server.assert_recovered_in_place()
    print(f"\n{backend} killed run: {killed_run.describe()} ended {ended_after:.1f} s after")
    assert_clear_errors([after], {}, bound_s=WALL_TIME_S)
    assert after.body["stdout"] == "42\n", after.body
    # Ended by the kill, not by the wall-time limit.
    assert ended_after < WALL_TIME_S / 2, killed_run.describe()
    assert_clear_errors(
        [killed_run], {503: {"sandbox-failed"}}, bound_s=WALL_TIME_S, ok_statuses=frozenset()
    )
    assert "killed from outside" in killed_run.body["detail"], killed_run.body
    assert suicide.status == 200, suicide.describe()
    assert (suicide.body["exit_code"], suicide.body["killed_reason"]) == (137, None)
    d.server.audit_verify()
