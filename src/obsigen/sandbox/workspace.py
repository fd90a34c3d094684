"""The host side of one run: a fresh directory tree, size-capped, removed after the run.

    <run>/input      root-owned, read-only to the run (mounted at /input)
    <run>/rw/        a tmpfs of ``workspace_mb`` (when we are root), owned by the sandbox user:
        workspace/   /workspace, the working directory
        output/      /output, what comes back as artifacts
        tmp/         /tmp

The tmpfs is what makes "fill the disk" end in ENOSPC inside the run instead of on the host.
Without root there is no mount: RLIMIT_FSIZE caps each file and the disk is not capped
(docs/sandbox.md says so).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from obsigen.sandbox.interfaces import SandboxFailed, SandboxInputError

SANDBOX_UID = 65534
SANDBOX_GID = 65534

_MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 0x2, 0x4, 0x8
_MNT_DETACH = 0x2
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._ -]{0,127}")

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def check_file_name(name: str) -> str:
    """A plain file name: no directories, no dot files, no control characters."""
    if not _NAME.fullmatch(name) or name.endswith((" ", ".")):
        raise SandboxInputError(
            f"file name {name[:64]!r} is not allowed: use letters, digits, '.', '_', '-', ' '"
        )
    return name


def _mount_tmpfs(target: Path, size_mb: int) -> None:
    # Inodes are capped too: a run creating millions of empty files is also a disk fill.
    options = f"size={size_mb}m,nr_inodes={max(1024, size_mb * 64)},mode=0755".encode()
    flags = _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
    if _libc.mount(b"tmpfs", os.fsencode(target), b"tmpfs", flags, options) != 0:
        errno = ctypes.get_errno()
        raise SandboxFailed(f"cannot mount the run's tmpfs: {os.strerror(errno)}")


def unmount(target: Path) -> None:
    if _libc.umount2(os.fsencode(target), _MNT_DETACH) != 0:
        errno = ctypes.get_errno()
        if errno not in (22, 2):  # EINVAL: not a mount point; ENOENT: already gone
            raise OSError(errno, os.strerror(errno), str(target))


def is_mount_point(path: Path) -> bool:
    return os.path.ismount(path)


@dataclass
class Workspace:
    root: Path
    mounted: bool

    @property
    def input_dir(self) -> Path:
        return self.root / "input"

    @property
    def rw_dir(self) -> Path:
        return self.root / "rw"

    @property
    def workspace_dir(self) -> Path:
        return self.rw_dir / "workspace"

    @property
    def output_dir(self) -> Path:
        return self.rw_dir / "output"

    @property
    def tmp_dir(self) -> Path:
        return self.rw_dir / "tmp"

    @classmethod
    def create(cls, root: Path, size_mb: int) -> Workspace:
        """Make the tree; mount the size-capped tmpfs when running as root."""
        root.mkdir(mode=0o711)
        workspace = cls(root, mounted=False)
        try:
            workspace.input_dir.mkdir(mode=0o555)
            workspace.rw_dir.mkdir(mode=0o755)
            if os.geteuid() == 0:
                _mount_tmpfs(workspace.rw_dir, size_mb)
                workspace.mounted = True
            for path in (workspace.workspace_dir, workspace.output_dir, workspace.tmp_dir):
                path.mkdir(mode=0o700)
                if os.geteuid() == 0:
                    os.chown(path, SANDBOX_UID, SANDBOX_GID)
        except BaseException:
            workspace.destroy()
            raise
        return workspace

    def write_inputs(self, files: Mapping[str, bytes]) -> None:
        """Copy the inputs in, root-owned and read-only (the mount is read-only as well)."""
        self.input_dir.chmod(0o755)
        try:
            for name, data in files.items():
                path = self.input_dir / check_file_name(name)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o444)
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
        finally:
            self.input_dir.chmod(0o555)

    def destroy(self) -> None:
        """Unmount and remove everything; safe to call twice."""
        if self.mounted or (self.rw_dir.exists() and is_mount_point(self.rw_dir)):
            unmount(self.rw_dir)
            self.mounted = False
        if self.root.exists():
            # The input dir is read-only to everyone; rmtree needs to write into it.
            if self.input_dir.exists():
                self.input_dir.chmod(0o755)
            shutil.rmtree(self.root, ignore_errors=True)
