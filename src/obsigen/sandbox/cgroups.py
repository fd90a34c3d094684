"""One cgroup per run (v1 or v2): memory, pids and CPU limits, the OOM count, removal.

gVisor creates its cgroup itself from the OCI spec's ``cgroupsPath``; we only read the OOM count
and remove what a killed sandbox leaves behind. bubblewrap sets no limits: we create the cgroup,
write the limits, and the launcher joins it before exec.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PARENT = "obsigen-sandbox"
V1_CONTROLLERS = ("memory", "pids", "cpu")
CPU_PERIOD_US = 100_000


def is_v2(root: Path = CGROUP_ROOT) -> bool:
    return (root / "cgroup.controllers").exists()


def available(root: Path = CGROUP_ROOT) -> bool:
    """Whether we can make cgroups with memory and pids limits here."""
    if os.geteuid() != 0:
        return False
    if is_v2(root):
        controllers = (root / "cgroup.controllers").read_text().split()
        return {"memory", "pids"} <= set(controllers)
    return all((root / c).is_dir() for c in ("memory", "pids"))


def _write(path: Path, value: str) -> None:
    path.write_text(value)


@dataclass(frozen=True, slots=True)
class Cgroup:
    """``/<PARENT>/<name>`` under every controller we use."""

    name: str
    root: Path = CGROUP_ROOT

    @property
    def relative(self) -> str:
        return f"/{PARENT}/{self.name}"

    def _dirs(self) -> list[Path]:
        if is_v2(self.root):
            return [self.root / PARENT / self.name]
        return [
            self.root / c / PARENT / self.name for c in V1_CONTROLLERS if (self.root / c).is_dir()
        ]

    def create(self, memory_mb: int, pids: int, cpus: float) -> None:
        v2 = is_v2(self.root)
        if v2:
            parent = self.root / PARENT
            parent.mkdir(exist_ok=True)
            with contextlib.suppress(OSError):
                _write(self.root / "cgroup.subtree_control", "+memory +pids +cpu")
            with contextlib.suppress(OSError):
                _write(parent / "cgroup.subtree_control", "+memory +pids +cpu")
        for directory in self._dirs():
            directory.mkdir(parents=True, exist_ok=True)
        memory = str(memory_mb * 1024 * 1024)
        quota = str(max(1000, int(cpus * CPU_PERIOD_US)))
        if v2:
            directory = self._dirs()[0]
            _write(directory / "memory.max", memory)
            with contextlib.suppress(OSError):
                _write(directory / "memory.swap.max", "0")
            _write(directory / "pids.max", str(pids))
            with contextlib.suppress(OSError):
                _write(directory / "cpu.max", f"{quota} {CPU_PERIOD_US}")
            return
        base = self.root
        _write(base / "memory" / PARENT / self.name / "memory.limit_in_bytes", memory)
        with contextlib.suppress(OSError):
            # Swap counts too where the kernel accounts it.
            _write(base / "memory" / PARENT / self.name / "memory.memsw.limit_in_bytes", memory)
        _write(base / "pids" / PARENT / self.name / "pids.max", str(pids))
        cpu = base / "cpu" / PARENT / self.name
        if cpu.is_dir():
            _write(cpu / "cpu.cfs_period_us", str(CPU_PERIOD_US))
            _write(cpu / "cpu.cfs_quota_us", quota)

    def procs_files(self) -> list[str]:
        """The ``cgroup.procs`` files a launcher writes its pid to."""
        return [str(d / "cgroup.procs") for d in self._dirs()]

    def oom_killed(self) -> bool:
        """Whether the kernel's OOM killer struck inside this cgroup."""
        if is_v2(self.root):
            path = self.root / PARENT / self.name / "memory.events"
            key = "oom_kill"
        else:
            path = self.root / "memory" / PARENT / self.name / "memory.oom_control"
            key = "oom_kill"
        try:
            lines = path.read_text().splitlines()
        except OSError:
            return False
        for line in lines:
            field, _, value = line.partition(" ")
            if field == key and value.strip().isdigit():
                return int(value) > 0
        return False

    def _all_dirs(self) -> list[Path]:
        # runsc makes the path under every v1 hierarchy, not only the ones we limit.
        if is_v2(self.root):
            return self._dirs()
        hierarchies = [d for d in self.root.iterdir() if d.is_dir() and not d.is_symlink()]
        return [d / PARENT / self.name for d in hierarchies]

    def remove(self, attempts: int = 20) -> bool:
        """rmdir every directory; a cgroup with dying tasks refuses for a moment, so retry."""
        remaining = [d for d in self._all_dirs() if d.exists()]
        for attempt in range(attempts):
            still = []
            for directory in remaining:
                try:
                    directory.rmdir()
                except FileNotFoundError:
                    continue
                except OSError:
                    still.append(directory)
            remaining = still
            if not remaining:
                return True
            time.sleep(0.005 * (attempt + 1))
        return False
