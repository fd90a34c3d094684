"""Cgroup limits and the OOM count, on a directory laid out like /sys/fs/cgroup (v1 and v2)."""

from __future__ import annotations

from pathlib import Path

from obsigen.sandbox.cgroups import PARENT, Cgroup


def v1_root(tmp_path: Path) -> Path:
    for controller in ("memory", "pids", "cpu", "cpuset"):
        (tmp_path / controller).mkdir()
    return tmp_path


def test_v1_limits_are_written_per_controller(tmp_path: Path) -> None:
    root = v1_root(tmp_path)
    cgroup = Cgroup("run-1", root)

    cgroup.create(memory_mb=256, pids=40, cpus=1.5)

    base = PARENT + "/run-1"
    assert (root / "memory" / base / "memory.limit_in_bytes").read_text() == str(256 << 20)
    assert (root / "pids" / base / "pids.max").read_text() == "40"
    assert (root / "cpu" / base / "cpu.cfs_quota_us").read_text() == "150000"
    assert cgroup.procs_files() == [
        str(root / c / base / "cgroup.procs") for c in ("memory", "pids", "cpu")
    ]


def test_v2_limits_are_written_in_one_directory(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    cgroup = Cgroup("run-2", tmp_path)

    cgroup.create(memory_mb=128, pids=10, cpus=0.5)

    directory = tmp_path / PARENT / "run-2"
    assert (directory / "memory.max").read_text() == str(128 << 20)
    assert (directory / "pids.max").read_text() == "10"
    assert (directory / "cpu.max").read_text() == "50000 100000"


def test_oom_kills_are_read_from_the_memory_controller(tmp_path: Path) -> None:
    root = v1_root(tmp_path)
    cgroup = Cgroup("run-3", root)
    directory = root / "memory" / PARENT / "run-3"
    directory.mkdir(parents=True)
    control = directory / "memory.oom_control"

    control.write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 0\n")
    assert not cgroup.oom_killed()
    control.write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")
    assert cgroup.oom_killed()
    assert not Cgroup("missing", root).oom_killed()


def test_remove_takes_the_directory_from_every_hierarchy(tmp_path: Path) -> None:
    root = v1_root(tmp_path)
    for controller in ("memory", "pids", "cpu", "cpuset"):
        (root / controller / PARENT / "run-4").mkdir(parents=True)

    assert Cgroup("run-4", root).remove()
    assert not list(root.glob(f"*/{PARENT}/run-4"))
