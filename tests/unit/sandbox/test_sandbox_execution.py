"""The run loop every backend shares, driven by a plain (unsandboxed) interpreter."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from obsigen.sandbox.execution import execute
from obsigen.sandbox.interfaces import Limits, RunResult, SandboxFailed


async def run(code: str, tmp_path: Path, oom: bool = False, **limits: float) -> RunResult:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-I", "-",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    return await execute(
        process,
        code,
        Limits(**limits),  # type: ignore[arg-type]
        kill=process.kill,
        oom_killed=lambda: oom,
        output_dir=tmp_path,
        backend="bwrap",
    )


async def test_output_exit_code_and_artifacts(tmp_path: Path) -> None:
    code = f"import sys\nprint('out')\nprint('err', file=sys.stderr)\n" \
           f"open({str(tmp_path / 'a.txt')!r}, 'w').write('hi')\nsys.exit(3)"  # fmt: skip
    result = await run(code, tmp_path)

    assert (result.stdout, result.stderr, result.exit_code) == ("out\n", "err\n", 3)
    assert result.killed_reason is None
    assert [a.name for a in result.artifacts] == ["a.txt"]


async def test_the_wall_time_limit_kills(tmp_path: Path) -> None:
    result = await run("while True: pass", tmp_path, wall_time_s=0.5)

    assert result.timed_out
    assert result.killed_reason == "timeout"
    assert result.exit_code == 137
    assert 500 <= result.duration_ms < 3000


async def test_an_output_flood_is_stopped(tmp_path: Path) -> None:
    result = await run("while True: print('y' * 100)", tmp_path, output_bytes=1000)

    assert result.killed_reason == "output_limit"
    assert result.stdout_truncated
    assert len(result.stdout) == 1000


async def test_a_kill_by_the_oom_killer_is_named(tmp_path: Path) -> None:
    result = await run(
        "import os, signal; os.kill(os.getpid(), signal.SIGKILL)", tmp_path, oom=True
    )

    assert (result.exit_code, result.killed_reason) == (137, "memory")


async def test_a_program_larger_than_a_pipe_buffer_is_fed_whole(tmp_path: Path) -> None:
    result = await run("x" * 200_000 + " = 1", tmp_path)
    assert result.exit_code == 0


async def test_a_sandbox_killed_from_outside_is_a_sandbox_failure(tmp_path: Path) -> None:
    # Here the process is the sandbox: a signal it dies of, with no limit and no OOM behind
    # it, came from outside the run.
    with pytest.raises(SandboxFailed, match="killed from outside"):
        await run("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", tmp_path)
