"""Where a runner keeps its sandboxes on the host, and cleaning up after a process that died.

Each runner gets ``<base>/<tag>`` with ``tag = <pid>x<random>``; every sandbox id, run directory
and cgroup it makes starts with the tag. A runner that starts sweeps the directories of
processes that are gone: their sandboxes, mounts and cgroups. Paths stay short because runsc
puts unix sockets under its state directory (108-byte limit).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

from obsigen.sandbox.cgroups import CGROUP_ROOT, PARENT, Cgroup, is_v2
from obsigen.sandbox.workspace import unmount

log = logging.getLogger(__name__)


def base_dir() -> Path:
    if os.geteuid() == 0 and Path("/run").is_dir():
        return Path("/run/obsigen-sandbox")
    return Path(tempfile.gettempdir()) / f"obsigen-sandbox-{os.geteuid()}"


def new_instance_dir(base: Path | None = None) -> Path:
    base = base or base_dir()
    # Traverse-only for others: bubblewrap runs as the host user 65534 and must reach its
    # run's directories, but nobody may list what is here.
    base.mkdir(mode=0o711, parents=True, exist_ok=True)
    base.chmod(0o711)
    path = base / f"{os.getpid()}x{secrets.token_hex(3)}"
    path.mkdir(mode=0o711)
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _mounts_under(path: Path) -> list[Path]:
    found = []
    with contextlib.suppress(OSError), Path("/proc/self/mountinfo").open() as mountinfo:
        for line in mountinfo:
            target = Path(line.split()[4].replace("\\040", " "))
            if target == path or path in target.parents:
                found.append(target)
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def _cgroups_with_prefix(prefix: str) -> set[str]:
    roots = [CGROUP_ROOT / PARENT] if is_v2() else list(CGROUP_ROOT.glob(f"*/{PARENT}"))
    names: set[str] = set()
    for root in roots:
        with contextlib.suppress(OSError):
            names |= {p.name for p in root.iterdir() if p.is_dir() and p.name.startswith(prefix)}
    return names


def remove_instance(path: Path, runsc: str | None) -> None:
    """Everything a runner left: sandboxes (runsc state), mounts, cgroups, files."""
    runsc_root = path / "runsc"
    # Containers leave state files here until deleted; none left means nothing to ask runsc.
    if runsc and runsc_root.is_dir() and any(runsc_root.iterdir()):
        listed = subprocess.run(  # noqa: S603 - fixed argv, no shell
            [runsc, f"--root={runsc_root}", "list", "-quiet"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        for container in listed.stdout.split():
            subprocess.run(  # noqa: S603 - fixed argv, no shell
                [runsc, f"--root={runsc_root}", "delete", "-force", container],
                capture_output=True,
                timeout=30,
                check=False,
            )
    for mount in _mounts_under(path):
        with contextlib.suppress(OSError):
            unmount(mount)
    for name in _cgroups_with_prefix(path.name):
        Cgroup(name).remove(attempts=3)
    shutil.rmtree(path, ignore_errors=True)


def sweep_stale(runsc: str | None, base: Path | None = None) -> int:
    """Remove the leftovers of runners whose process has exited; returns how many."""
    base = base or base_dir()
    if not base.is_dir():
        return 0
    removed = 0
    for entry in base.iterdir():
        pid_text, _, _ = entry.name.partition("x")
        if not pid_text.isdigit() or _alive(int(pid_text)):
            continue
        log.info("removing sandboxes left by exited process %s", pid_text)
        remove_instance(entry, runsc)
        removed += 1
    return removed
