"""CPU seconds used by a server and every process it started (Linux /proc).

On a shared, noisy machine wall-clock latency swings from run to run; the CPU a server spends
per request does much less, so the benchmark reports both.
"""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")
TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid_dir: Path) -> list[str] | None:
    try:
        text = (pid_dir / "stat").read_text()
    except OSError:
        return None
    # The command name sits in parentheses and may itself contain spaces or parentheses.
    return text[text.rindex(")") + 2 :].split()


def session_cpu_s(session_id: int) -> float:
    """User + system CPU seconds of the live processes in a session (field 6 of stat)."""
    ticks = 0
    for pid_dir in PROC.iterdir():
        if not pid_dir.name.isdigit():
            continue
        fields = _stat_fields(pid_dir)
        # After the name: state, ppid, pgrp, session, ..., utime (index 11), stime (index 12).
        if fields is None or int(fields[3]) != session_id:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / TICKS_PER_S
