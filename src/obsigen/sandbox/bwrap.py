"""bubblewrap backend, the fallback where gVisor cannot run.

Namespaces of every kind (network: ``lo`` only), uid/gid 65534 inside, no capabilities, no new
user namespaces, the host's ``/usr`` read-only, a minimal ``/etc``, the run's own directories,
a read-only root, and a seccomp filter (``seccomp_filter.py``). bwrap sets no resource limits,
so the launcher does: as root it joins a fresh cgroup (memory, pids, CPU), applies rlimits with
``prlimit`` and drops to the host user 65534 with ``setpriv`` before exec'ing bwrap (RLIMIT_NPROC
means nothing to a process that is host root).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import os
import shutil
import signal
from pathlib import Path

from obsigen.sandbox import runtime
from obsigen.sandbox.cgroups import Cgroup
from obsigen.sandbox.execution import execute
from obsigen.sandbox.interfaces import (
    BackendName,
    Limits,
    RunRequest,
    RunResult,
    SandboxFailed,
)
from obsigen.sandbox.rootfs import MERGED_USR, build_etc, etc_bound, split_usr_dirs
from obsigen.sandbox.workspace import SANDBOX_GID, SANDBOX_UID, Workspace

log = logging.getLogger(__name__)

TEARDOWN_TIMEOUT_S = 15.0
# bwrap's own two processes (the monitor and the namespace's init) come on top of the run's.
BWRAP_PROCESSES = 2
# All runs share the host uid 65534: this only stops a runaway; the pids cgroup is the limit.
NPROC_BACKSTOP = 4096
LAUNCH_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
# Joins the cgroups named before "--", then becomes the command after it.
_JOIN_CGROUPS = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"'


def bwrap_argv(bwrap: str, etc: Path, workspace: Workspace, seccomp_fd: int) -> list[str]:
    argv = [
        bwrap,
        "--unshare-all", "--unshare-user", "--disable-userns",
        "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_GID),
        "--hostname", "sandbox",
        "--die-with-parent", "--new-session", "--clearenv", "--cap-drop", "ALL",
        "--ro-bind", "/usr", "/usr",
    ]  # fmt: skip
    split = split_usr_dirs()
    for name in MERGED_USR:
        if name in split:
            argv += ["--ro-bind", f"/{name}", f"/{name}"]
        elif Path("/", name).exists():
            argv += ["--symlink", f"usr/{name}", f"/{name}"]
    argv += [
        "--ro-bind", str(etc), "/etc",
        *(a for name in etc_bound() for a in ("--ro-bind", f"/etc/{name}", f"/etc/{name}")),
        "--proc", "/proc",
        "--dev", "/dev",
        "--bind", str(workspace.tmp_dir), "/tmp",  # noqa: S108 - the run's own /tmp
        "--bind", str(workspace.workspace_dir), runtime.WORKDIR,
        "--bind", str(workspace.output_dir), runtime.OUTPUT_DIR,
        "--ro-bind", str(workspace.input_dir), runtime.INPUT_DIR,
        "--remount-ro", "/",
        "--chdir", runtime.WORKDIR,
        "--seccomp", str(seccomp_fd),
    ]  # fmt: skip
    for variable in runtime.ENV:
        name, _, value = variable.partition("=")
        argv += ["--setenv", name, value]
    return [*argv, "--", *runtime.ARGV]


def limits_argv(
    prlimit: str, setpriv: str | None, limits: Limits, *, cgroup_limited: bool
) -> list[str]:
    """``prlimit ... [setpriv ...]``: the rlimits, then the drop to the host user 65534."""
    cpu_seconds = max(1, math.ceil(limits.wall_time_s * max(limits.cpus, 1.0)) + 1)
    file_size = limits.file_size_mb * 1024 * 1024
    nproc = NPROC_BACKSTOP if cgroup_limited else limits.pids + BWRAP_PROCESSES
    argv = [
        prlimit,
        f"--nproc={nproc}",
        f"--nofile={limits.open_files}",
        f"--fsize={file_size}",
        f"--cpu={cpu_seconds}:{cpu_seconds + 1}",
        "--core=0",
    ]
    if not cgroup_limited:
        # Without a memory cgroup, the address space is the only memory limit there is.
        argv.append(f"--as={limits.memory_mb * 1024 * 1024}")
    if setpriv is not None:
        argv += [
            setpriv,
            f"--reuid={SANDBOX_UID}",
            f"--regid={SANDBOX_GID}",
            "--clear-groups",
            "--no-new-privs",
        ]
    return argv


class BwrapBackend:
    def __init__(
        self,
        bwrap: str,
        instance_dir: Path,
        seccomp_bpf: Path,
        *,
        use_cgroups: bool,
    ) -> None:
        self._bwrap = bwrap
        self._dir = instance_dir
        self._seccomp_bpf = seccomp_bpf
        self._use_cgroups = use_cgroups
        self._root = os.geteuid() == 0
        prlimit, setpriv = shutil.which("prlimit"), shutil.which("setpriv")
        if prlimit is None or (self._root and setpriv is None):
            raise SandboxFailed("bubblewrap runs need prlimit and setpriv (util-linux)")
        self._prlimit = prlimit
        self._setpriv = setpriv if self._root else None
        self._etc = instance_dir / "etc"
        build_etc(self._etc)
        self._numbers = itertools.count()

    @property
    def name(self) -> BackendName:
        return "bwrap"

    def command(
        self, workspace: Workspace, limits: Limits, cgroup: Cgroup | None, seccomp_fd: int
    ) -> list[str]:
        inner = [
            *limits_argv(self._prlimit, self._setpriv, limits, cgroup_limited=cgroup is not None),
            *bwrap_argv(self._bwrap, self._etc, workspace, seccomp_fd),
        ]
        if cgroup is None:
            return inner
        return ["/bin/sh", "-c", _JOIN_CGROUPS, "sh", *cgroup.procs_files(), "--", *inner]

    async def prepare(self, limits: Limits) -> BwrapSandbox:
        number = next(self._numbers)
        name = f"{self._dir.name}-{number}"
        run_dir = self._dir / str(number)
        # Traversable by the host user 65534, whom bwrap runs as; nothing here is listable.
        run_dir.mkdir(mode=0o711)
        cgroup = Cgroup(name) if self._use_cgroups else None
        try:
            workspace = Workspace.create(run_dir / "ws", limits.workspace_mb)
            workspace.root.chmod(0o711)
            if cgroup is not None:
                cgroup.create(limits.memory_mb, limits.pids + BWRAP_PROCESSES, limits.cpus)
        except BaseException:
            if cgroup is not None:
                cgroup.remove(attempts=1)
            shutil.rmtree(run_dir, ignore_errors=True)
            raise
        sandbox = BwrapSandbox(self, run_dir, workspace, cgroup, limits)
        try:
            await sandbox.spawn()
        except BaseException:
            await sandbox.discard()
            raise
        return sandbox

    def seccomp_fd(self) -> int:
        return os.open(self._seccomp_bpf, os.O_RDONLY)

    async def aclose(self) -> None:
        return None


class BwrapSandbox:
    def __init__(
        self,
        backend: BwrapBackend,
        run_dir: Path,
        workspace: Workspace,
        cgroup: Cgroup | None,
        limits: Limits,
    ) -> None:
        self._backend = backend
        self._run_dir = run_dir
        self._workspace = workspace
        self._cgroup = cgroup
        self.limits = limits
        self._process: asyncio.subprocess.Process | None = None
        self._used = False
        self._discarded = False

    def _kill(self) -> None:
        """The bwrap monitor first (its init dies with it), then anything left in the cgroup."""
        if self._process is not None and self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
        if self._cgroup is not None:
            for procs in self._cgroup.procs_files():
                with contextlib.suppress(OSError, ValueError):
                    for pid in Path(procs).read_text().split():
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(int(pid), signal.SIGKILL)

    async def spawn(self) -> None:
        """Start the sandbox and its interpreter, which waits for the program on stdin."""
        seccomp_fd = self._backend.seccomp_fd()
        try:
            self._process = await asyncio.create_subprocess_exec(
                *self._backend.command(self._workspace, self.limits, self._cgroup, seccomp_fd),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=(seccomp_fd,),
                start_new_session=True,
                # bwrap's init inside keeps the environment it was started with, and the run
                # can read /proc/1/environ: the server's variables must never get that far.
                env=LAUNCH_ENV,
            )
        finally:
            os.close(seccomp_fd)

    async def run(self, request: RunRequest) -> RunResult:
        assert not self._used, "a sandbox is used once"
        self._used = True
        process = self._process
        assert process is not None
        if process.returncode is not None:
            raise SandboxFailed(f"the prepared sandbox exited early ({process.returncode})")
        self._workspace.write_inputs(request.files)
        cgroup = self._cgroup
        result = await execute(
            process,
            request.code,
            self.limits,
            kill=self._kill,
            oom_killed=lambda: cgroup is not None and cgroup.oom_killed(),
            output_dir=self._workspace.output_dir,
            backend="bwrap",
        )
        if result.exit_code == 125 and not result.stdout and "bwrap:" in result.stderr[:200]:
            raise SandboxFailed(f"bubblewrap could not start: {result.stderr[:300]}")
        return result

    async def discard(self) -> None:
        if self._discarded:
            return
        self._discarded = True
        self._kill()
        if self._process is not None and self._process.returncode is None:
            try:
                await asyncio.wait_for(self._process.wait(), timeout=TEARDOWN_TIMEOUT_S)
            except TimeoutError:
                log.warning("bwrap sandbox %s did not exit after SIGKILL", self._run_dir)
        if self._cgroup is not None and not await asyncio.to_thread(self._cgroup.remove):
            log.warning("bwrap sandbox %s: cgroup could not be removed", self._run_dir)
        await asyncio.to_thread(self._workspace.destroy)
        await asyncio.to_thread(shutil.rmtree, self._run_dir, True)
