"""Detection says which backend runs and why; leftovers of dead servers are swept."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from obsigen.sandbox.detect import detect, probe_bwrap, probe_gvisor
from obsigen.sandbox.statedir import new_instance_dir, sweep_stale


def test_missing_binaries_are_named_with_their_package() -> None:
    assert probe_gvisor(None) == "runsc is not installed (Debian package: runsc)"
    assert probe_bwrap(None) == "bwrap is not installed (Debian package: bubblewrap)"


def test_detection_names_a_backend_or_says_why_none() -> None:
    found = detect("auto")
    if found.backend is None:
        assert "gvisor:" in found.reason
        assert "bwrap:" in found.reason
    elif found.backend == "bwrap":
        assert found.gvisor_problem is not None
        assert found.reason.startswith("fallback: gVisor unusable")
    else:
        assert found.runsc is not None


def test_an_explicit_backend_is_not_replaced_by_another() -> None:
    found = detect("bwrap")
    assert found.backend in ("bwrap", None)
    assert found.gvisor_problem == "not configured"


def test_sweep_removes_only_the_directories_of_exited_processes(tmp_path: Path) -> None:
    mine = new_instance_dir(tmp_path)
    # A pid that exited: a shell we started, which printed its own pid and ended.
    dead_pid = int(subprocess.check_output(["/bin/sh", "-c", "echo $$"]).strip())
    dead = tmp_path / f"{dead_pid}xabcdef"
    (dead / "0" / "ws").mkdir(parents=True)

    removed = sweep_stale(None, tmp_path)

    assert removed == 1
    assert not dead.exists()
    assert mine.exists()
    assert mine.name.startswith(f"{os.getpid()}x")
