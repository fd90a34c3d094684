"""gVisor (``runsc``) backend: each run is its own OCI sandbox, made ahead and used once.

The bundle's root is a directory of empty mount points, read-only, with ``/usr`` bound
read-only from the host (the Debian Python runtime; /bin, /lib, /lib64 are symlinks into it as
on merged-/usr Debian), a minimal ``/etc``, and the run's own ``/workspace``, ``/output``,
``/tmp`` (one size-capped tmpfs on the host) and ``/input`` (read-only). The process runs as
65534:65534 with no capabilities and ``noNewPrivileges``; the network is ``none`` (loopback
only); memory, CPU and a backstop pids limit are host cgroup limits; processes, open files,
file size and CPU seconds are rlimits inside (a pids cgroup alone panics gVisor: its own
threads count).

Traps this module is shaped by (docs/sandbox.md): stdio must be pipes, never files, and it is
bound at ``runsc create``; ``runsc wait`` polls for seconds, so the exit status comes from the
reaper (``reaper.py``) and output is read to EOF; a killed sandbox leaves cgroup directories.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import math
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

from obsigen.sandbox import reaper, runtime
from obsigen.sandbox.cgroups import Cgroup
from obsigen.sandbox.execution import execute
from obsigen.sandbox.interfaces import (
    BackendName,
    Limits,
    RunRequest,
    RunResult,
    SandboxFailed,
)
from obsigen.sandbox.rootfs import build_rootfs, etc_bound, split_usr_dirs
from obsigen.sandbox.workspace import SANDBOX_GID, SANDBOX_UID, Workspace

log = logging.getLogger(__name__)

CREATE_TIMEOUT_S = 30.0
TEARDOWN_TIMEOUT_S = 15.0
# gVisor's own threads and the ptrace stubs count in the pids cgroup: the guest's process
# limit is RLIMIT_NPROC; this only stops a runaway sentry.
PIDS_BACKSTOP = 4096


def _bind(source: Path | str, destination: str, *, writable: bool) -> dict[str, Any]:
    mode = "rw" if writable else "ro"
    return {
        "destination": destination,
        "type": "bind",
        "source": str(source),
        "options": ["rbind", mode, "nosuid", "nodev"],
    }


def _split_usr_binds() -> list[dict[str, Any]]:
    return [_bind(Path("/", name), f"/{name}", writable=False) for name in split_usr_dirs()]


def oci_spec(rootfs: Path, workspace: Workspace, limits: Limits, cgroup: Cgroup) -> dict[str, Any]:
    """The OCI runtime spec of one run."""
    no_caps: dict[str, list[str]] = {
        k: [] for k in ("bounding", "effective", "inheritable", "permitted", "ambient")
    }
    cpu_seconds = max(1, math.ceil(limits.wall_time_s * max(limits.cpus, 1.0)) + 1)
    file_size = limits.file_size_mb * 1024 * 1024
    rlimits = [
        {"type": "RLIMIT_NPROC", "soft": limits.pids, "hard": limits.pids},
        {"type": "RLIMIT_NOFILE", "soft": limits.open_files, "hard": limits.open_files},
        {"type": "RLIMIT_FSIZE", "soft": file_size, "hard": file_size},
        {"type": "RLIMIT_CPU", "soft": cpu_seconds, "hard": cpu_seconds + 1},
        {"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
    ]
    memory = limits.memory_mb * 1024 * 1024
    period = 100_000
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": SANDBOX_UID, "gid": SANDBOX_GID, "additionalGids": []},
            "args": list(runtime.ARGV),
            "env": list(runtime.ENV),
            "cwd": runtime.WORKDIR,
            "capabilities": no_caps,
            "noNewPrivileges": True,
            "rlimits": rlimits,
        },
        "root": {"path": str(rootfs), "readonly": True},
        "hostname": "sandbox",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"},
            _bind("/usr", "/usr", writable=False),
            *_split_usr_binds(),
            *(_bind(f"/etc/{name}", f"/etc/{name}", writable=False) for name in etc_bound()),
            _bind(workspace.tmp_dir, "/tmp", writable=True),  # noqa: S108 - the run's own
            _bind(workspace.workspace_dir, runtime.WORKDIR, writable=True),
            _bind(workspace.output_dir, runtime.OUTPUT_DIR, writable=True),
            _bind(workspace.input_dir, runtime.INPUT_DIR, writable=False),
        ],
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "cgroupsPath": cgroup.relative,
            "resources": {
                "memory": {"limit": memory, "swap": memory},
                "pids": {"limit": PIDS_BACKSTOP},
                "cpu": {"quota": max(1000, int(limits.cpus * period)), "period": period},
            },
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list"],
            "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus"],
        },
    }


def _read_status_line(fd: int) -> bytes:
    with os.fdopen(fd, "rb") as handle:
        return handle.readline()


class GVisorBackend:
    def __init__(self, runsc: str, instance_dir: Path) -> None:
        self._runsc = runsc
        self._dir = instance_dir
        self._rootfs = instance_dir / "rootfs"
        build_rootfs(self._rootfs)
        self._numbers = itertools.count()

    @property
    def name(self) -> BackendName:
        return "gvisor"

    def runsc(self, *args: str) -> list[str]:
        return [
            self._runsc,
            f"--root={self._dir / 'runsc'}",
            "--network=none",
            "--net-raw=false",
            "--host-uds=none",
            "--host-fifo=none",
            *args,
        ]

    async def prepare(self, limits: Limits) -> GVisorSandbox:
        number = next(self._numbers)
        sandbox_id = f"{self._dir.name}-{number}"
        run_dir = self._dir / str(number)
        run_dir.mkdir(mode=0o700)
        cgroup = Cgroup(sandbox_id)
        try:
            workspace = Workspace.create(run_dir / "ws", limits.workspace_mb)
        except BaseException:
            run_dir.rmdir()
            raise
        sandbox = GVisorSandbox(self, sandbox_id, run_dir, workspace, cgroup, limits)
        try:
            await sandbox.create(oci_spec(self._rootfs, workspace, limits, cgroup))
            await sandbox.start()
        except BaseException:
            await sandbox.discard()
            raise
        return sandbox

    async def aclose(self) -> None:
        return None


class GVisorSandbox:
    def __init__(
        self,
        backend: GVisorBackend,
        sandbox_id: str,
        run_dir: Path,
        workspace: Workspace,
        cgroup: Cgroup,
        limits: Limits,
    ) -> None:
        self._backend = backend
        self.id = sandbox_id
        self._run_dir = run_dir
        self._workspace = workspace
        self._cgroup = cgroup
        self.limits = limits
        self._reaper: asyncio.subprocess.Process | None = None
        self._pidfd: int | None = None
        self._used = False
        self._discarded = False

    async def create(self, spec: dict[str, Any]) -> None:
        bundle = self._run_dir / "bundle"
        bundle.mkdir(mode=0o700)
        (bundle / "config.json").write_text(json.dumps(spec))
        pid_file = self._run_dir / "sandbox.pid"
        status_read, status_write = os.pipe()
        try:
            self._reaper = await asyncio.create_subprocess_exec(
                sys.executable, "-I", "-S", reaper.__file__, str(pid_file), str(status_write),
                *self._backend.runsc(
                    "create", f"--bundle={bundle}", f"--pid-file={pid_file}", self.id
                ),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=(status_write,),
                # Signals for the server's process group (Ctrl-C) must not reach sandboxes.
                start_new_session=True,
            )  # fmt: skip
        finally:
            os.close(status_write)
        status = asyncio.ensure_future(asyncio.to_thread(_read_status_line, status_read))
        try:
            line = await asyncio.wait_for(asyncio.shield(status), CREATE_TIMEOUT_S)
        except BaseException:
            # Cancelled (a pool shutting down) or too slow: runsc create goes on regardless,
            # and what it makes can only be killed once its pid is known. Wait for it.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(status, CREATE_TIMEOUT_S)
            self._adopt(pid_file)
            raise
        if line.strip() != b"0":
            detail = await self._early_stderr()
            raise SandboxFailed(f"runsc create failed ({line.strip()!r}): {detail}")
        if not self._adopt(pid_file):
            raise SandboxFailed("runsc create reported no sandbox process")

    async def start(self) -> None:
        """Start the interpreter; it waits for the program on stdin and runs nothing before.

        Done ahead with the create, this takes ``runsc start`` (~60 ms) and the interpreter's
        start-up (~70 ms under gVisor) off the run's path; the sandbox is still used once.
        """
        start = await asyncio.create_subprocess_exec(
            *self._backend.runsc("start", self.id),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, error = await start.communicate()
        if start.returncode != 0:
            raise SandboxFailed(f"runsc start failed: {error.decode(errors='replace')[-300:]}")

    def _adopt(self, pid_file: Path) -> bool:
        """Hold a pidfd on the sandbox process: a kill can then never hit a reused pid."""
        if self._pidfd is not None:
            return True
        try:
            self._pidfd = os.pidfd_open(int(pid_file.read_text().strip()))
        except (OSError, ValueError):
            return False
        return True

    async def _early_stderr(self) -> str:
        assert self._reaper is not None
        assert self._reaper.stderr is not None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                return (await self._reaper.stderr.read(4096)).decode(errors="replace")[-500:]
        return ""

    def _kill(self) -> None:
        """SIGKILL the sandbox process: the sentry and every guest process go at once."""
        if self._pidfd is not None:
            with contextlib.suppress(ProcessLookupError, OSError):
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)

    async def run(self, request: RunRequest) -> RunResult:
        assert not self._used, "a sandbox is used once"
        self._used = True
        reaper_process = self._reaper
        assert reaper_process is not None
        self._workspace.write_inputs(request.files)
        return await execute(
            reaper_process,
            request.code,
            self.limits,
            kill=self._kill,
            oom_killed=self._cgroup.oom_killed,
            output_dir=self._workspace.output_dir,
            backend="gvisor",
        )

    async def discard(self) -> None:
        """Kill, delete, unmount, remove: nothing of the run stays on the host."""
        if self._discarded:
            return
        self._discarded = True
        self._adopt(self._run_dir / "sandbox.pid")
        self._kill()
        delete = await asyncio.create_subprocess_exec(
            *self._backend.runsc("delete", "--force", self.id),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            await asyncio.wait_for(delete.wait(), timeout=TEARDOWN_TIMEOUT_S)
        except TimeoutError:
            delete.kill()
            await delete.wait()
        if self._reaper is not None and self._reaper.returncode is None:
            try:
                await asyncio.wait_for(self._reaper.wait(), timeout=TEARDOWN_TIMEOUT_S)
            except TimeoutError:
                log.warning("sandbox %s: reaper still running after delete; killing it", self.id)
                self._reaper.kill()
                # wait() also waits for the stdio pipes, which a stray sandbox would hold.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._reaper.wait(), timeout=2)
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        if not await asyncio.to_thread(self._cgroup.remove):
            log.warning("sandbox %s: cgroup directories could not be removed", self.id)
        await asyncio.to_thread(self._workspace.destroy)
        await asyncio.to_thread(shutil.rmtree, self._run_dir, True)
