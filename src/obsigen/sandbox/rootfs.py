"""The read-only root both backends share: empty mount points, merged-/usr links, a small /etc.

Built once per runner from the host's Debian system; the runtime itself (``/usr``) is bound
read-only, never copied.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from obsigen.sandbox import runtime

MOUNT_POINTS = ("usr", "proc", "dev", "sys", "tmp", "workspace", "input", "output")
MERGED_USR = ("bin", "lib", "lib64", "sbin")


def split_usr_dirs() -> tuple[str, ...]:
    """Top-level dirs that are real directories on this host (a system without merged /usr)."""
    return tuple(
        name for name in MERGED_USR if Path("/", name).is_dir() and not Path("/", name).is_symlink()
    )


def etc_bound(host_etc: Path = Path("/etc")) -> tuple[str, ...]:
    """The host /etc directories bound read-only into every run (those that exist here)."""
    return tuple(name for name in runtime.ETC_BOUND if (host_etc / name).is_dir())


def build_etc(etc: Path, host_etc: Path = Path("/etc")) -> None:
    etc.mkdir(mode=0o755)
    for name, text in runtime.ETC_FILES.items():
        (etc / name).write_text(text)
    for name in runtime.ETC_COPIED:
        if (host_etc / name).is_file():
            shutil.copyfile(host_etc / name, etc / name)
    for name in etc_bound(host_etc):
        (etc / name).mkdir(mode=0o755)  # a mount point
    for path in etc.rglob("*"):
        if path.is_file() and not path.is_symlink():
            path.chmod(0o444)


def build_rootfs(rootfs: Path) -> None:
    rootfs.mkdir(mode=0o755)
    for name in MOUNT_POINTS:
        (rootfs / name).mkdir(mode=0o755)
    split = split_usr_dirs()
    for name in MERGED_USR:
        if name in split:
            (rootfs / name).mkdir(mode=0o755)
        elif Path("/", name).exists():
            (rootfs / name).symlink_to(f"usr/{name}")
    build_etc(rootfs / "etc")
