"""Which sandbox backend can run here, and why (or why not): asked once per process.

gVisor is preferred. Each probe runs a real, tiny sandbox: a binary on PATH says nothing about
a kernel without user namespaces or a runsc that cannot start.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from obsigen.sandbox import cgroups
from obsigen.sandbox.interfaces import BackendName
from obsigen.sandbox.workspace import SANDBOX_GID, SANDBOX_UID

DEBIAN_PYTHON = "/usr/bin/python3"
SECCOMP_SCRIPT = Path(__file__).with_name("seccomp_filter.py")
PROBE_TIMEOUT_S = 20.0

Wanted = Literal["auto", "gvisor", "bwrap", "kubernetes"]


@dataclass(frozen=True, slots=True)
class Detection:
    backend: BackendName | None
    reason: str  # why this backend (or why none)
    runsc: str | None = None
    bwrap: str | None = None
    gvisor_problem: str | None = None
    bwrap_problem: str | None = None


def _run(argv: list[str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(  # noqa: S603 - fixed argv, no shell
        argv, capture_output=True, timeout=PROBE_TIMEOUT_S, check=False, stdin=subprocess.DEVNULL
    )


def _tail(data: bytes) -> str:
    text = data.decode(errors="replace").strip().splitlines()
    return text[-1][:200] if text else "no output"


def probe_gvisor(runsc: str | None) -> str | None:
    """None when runsc can start a sandbox here, else what stops it."""
    if runsc is None:
        return "runsc is not installed (Debian package: runsc)"
    if os.geteuid() != 0:
        return "runsc needs root to create sandboxes; the server is not root"
    if not cgroups.available():
        return "no usable cgroup memory and pids controllers"
    if not Path(DEBIAN_PYTHON).is_file():
        return f"the sandbox runtime {DEBIAN_PYTHON} is missing"
    with tempfile.TemporaryDirectory(prefix="obsigen-probe-") as state:
        try:
            done = _run([runsc, f"--root={state}", "--network=none", "do", "--", "/bin/true"])
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"runsc did not start a sandbox: {exc}"
    if done.returncode != 0:
        return f"runsc did not start a sandbox: {_tail(done.stderr)}"
    return None


def build_seccomp(out: Path) -> str | None:
    """Write the bwrap seccomp filter to ``out``; None on success, else what went wrong."""
    if not Path(DEBIAN_PYTHON).is_file():
        return f"{DEBIAN_PYTHON} is missing"
    try:
        done = _run([DEBIAN_PYTHON, "-I", str(SECCOMP_SCRIPT), str(out)])
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot build the seccomp filter: {exc}"
    if done.returncode != 0:
        why = _tail(done.stderr)
        return f"cannot build the seccomp filter (Debian package python3-seccomp): {why}"
    return None


def probe_bwrap(bwrap: str | None) -> str | None:
    if bwrap is None:
        return "bwrap is not installed (Debian package: bubblewrap)"
    if shutil.which("prlimit") is None:
        return "prlimit (util-linux) is missing"
    root = os.geteuid() == 0
    setpriv = shutil.which("setpriv")
    if root and setpriv is None:
        return "setpriv (util-linux) is missing"
    with tempfile.TemporaryDirectory(prefix="obsigen-probe-") as tmp:
        problem = build_seccomp(Path(tmp) / "filter.bpf")
        if problem is not None:
            return problem
        as_user = [setpriv, f"--reuid={SANDBOX_UID}", f"--regid={SANDBOX_GID}", "--clear-groups"]
        argv = [
            *(as_user if root and setpriv else []),
            bwrap, "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent",
            "--ro-bind", "/usr", "/usr", "--symlink", "usr/lib", "/lib",
            "--symlink", "usr/lib64", "/lib64", "--symlink", "usr/bin", "/bin",
            "/usr/bin/true",
        ]  # fmt: skip
        try:
            done = _run([a for a in argv if a is not None])
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"bwrap did not start: {exc}"
    if done.returncode != 0:
        return f"bwrap did not start a sandbox: {_tail(done.stderr)}"
    return None


@functools.cache
def detect(wanted: Wanted = "auto") -> Detection:
    if wanted == "kubernetes":
        # Nothing to probe on this host: runs are Pods made through the cluster's API.
        return Detection("kubernetes", "configured: one gVisor Pod per run via the Kubernetes API")
    runsc, bwrap = shutil.which("runsc"), shutil.which("bwrap")
    gvisor_problem = probe_gvisor(runsc) if wanted in ("auto", "gvisor") else "not configured"
    if gvisor_problem is None:
        return Detection("gvisor", "runsc starts sandboxes here", runsc, bwrap)
    bwrap_problem = probe_bwrap(bwrap) if wanted in ("auto", "bwrap") else "not configured"
    if bwrap_problem is None:
        why = "configured" if wanted == "bwrap" else f"fallback: gVisor unusable: {gvisor_problem}"
        return Detection("bwrap", why, runsc, bwrap, gvisor_problem, None)
    reason = f"no sandbox: gvisor: {gvisor_problem}; bwrap: {bwrap_problem}"
    return Detection(None, reason, runsc, bwrap, gvisor_problem, bwrap_problem)
