"""One run of a prepared sandbox, the same for every backend: send the program, read the
output to EOF under the caps and the wall-time limit, stop the sandbox when a limit is hit,
and turn what happened into a :class:`RunResult`.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from pathlib import Path

from obsigen.sandbox import artifacts
from obsigen.sandbox.interfaces import (
    BackendName,
    KilledReason,
    Limits,
    RunResult,
    SandboxFailed,
)
from obsigen.sandbox.stdio import feed_stdin, read_capped

# After a kill, how long the sandbox may take to close its pipes and exit.
STOP_GRACE_S = 15.0
_SIGNAL_REASONS: dict[int, KilledReason] = {
    128 + signal.SIGXCPU: "cpu_time",
    128 + signal.SIGXFSZ: "file_size",
}


async def execute(
    process: asyncio.subprocess.Process,
    code: str,
    limits: Limits,
    *,
    kill: Callable[[], None],
    oom_killed: Callable[[], bool],
    output_dir: Path,
    backend: BackendName,
) -> RunResult:
    """Run ``code`` on ``process`` (its stdin feeds the interpreter; its exit is the run's).

    ``process`` is the sandbox's outermost process (bwrap's monitor, gVisor's reaper), which
    exits with the program's status, 128 + N included, and dies of a signal itself only when
    the sandbox was killed: by us (a limit, named in ``killed_reason``), by the OOM killer
    (``memory``), or by something outside the run. The last is the sandbox failing, not the
    code: SandboxFailed (503 ``sandbox-failed``), so nobody mistakes it for the program's
    own exit code.
    """
    assert process.stdin is not None
    assert process.stdout is not None
    assert process.stderr is not None
    reasons: list[KilledReason] = []

    def stop(reason: KilledReason) -> None:
        if not reasons:
            reasons.append(reason)
        kill()

    started = time.perf_counter()
    work = asyncio.gather(
        feed_stdin(process.stdin, code.encode()),
        read_capped(process.stdout, limits.output_bytes, lambda: stop("output_limit")),
        read_capped(process.stderr, limits.output_bytes, lambda: stop("output_limit")),
        # Also waits for the pipes to close: the status arrives after the last output.
        process.wait(),
    )
    try:
        await asyncio.wait_for(asyncio.shield(work), timeout=limits.wall_time_s)
    except TimeoutError:
        stop("timeout")
        try:
            await asyncio.wait_for(work, timeout=STOP_GRACE_S)
        except TimeoutError:
            raise SandboxFailed("the sandbox did not stop after it was killed") from None
    _, stdout, stderr, status = work.result()
    duration_ms = int((time.perf_counter() - started) * 1000)
    # asyncio reports "killed by signal N" as -N; the shell's 128 + N is what people read.
    exit_code = 128 - status if status < 0 else status
    if not reasons and oom_killed():
        reasons.append("memory")
    if not reasons and exit_code in _SIGNAL_REASONS:
        reasons.append(_SIGNAL_REASONS[exit_code])
    if not reasons and status < 0:
        raise SandboxFailed(
            f"the sandbox was killed from outside the run (signal {-status}) before the code "
            "finished; run it again"
        )
    found, rejected = await asyncio.to_thread(artifacts.collect, output_dir, limits)
    return RunResult(
        stdout=stdout.text(),
        stderr=stderr.text(),
        exit_code=exit_code,
        duration_ms=duration_ms,
        backend=backend,
        timed_out=reasons[:1] == ["timeout"],
        killed_reason=reasons[0] if reasons else None,
        stdout_truncated=stdout.truncated,
        stderr_truncated=stderr.truncated,
        artifacts=found,
        rejected_artifacts=rejected,
    )
