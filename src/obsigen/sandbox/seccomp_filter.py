"""Write the bubblewrap runs' seccomp filter as BPF: ``/usr/bin/python3 -I seccomp_filter.py OUT``.

Run as a script by Debian's Python, the only one that sees ``python3-seccomp``; the runner
builds the file once and hands it to ``bwrap --seccomp FD``. Everything is allowed except what
a Python run has no use for and an escape would: sockets other than AF_UNIX (the network
namespace already has only ``lo``; this also refuses raw, packet and netlink sockets), ptrace,
mounts, namespaces, keyrings, BPF, userfaultfd, io_uring, perf, modules and kexec. Refused calls
fail with EPERM (EAFNOSUPPORT for socket families) instead of killing, so Python reports a
clear error.
"""

from __future__ import annotations

import errno
import sys
from pathlib import Path

# Not installed in the project's virtualenv; only /usr/bin/python3 runs this file.
import seccomp  # type: ignore[import-not-found]

AF_UNIX = 1
CLONE_NEWUSER = 0x10000000

DENIED = (
    "ptrace", "process_vm_readv", "process_vm_writev",
    "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen",
    "fsconfig", "fsmount", "fspick", "mount_setattr",
    "unshare", "setns",
    "keyctl", "add_key", "request_key",
    "bpf", "userfaultfd", "perf_event_open",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
    "open_by_handle_at", "name_to_handle_at",
    "swapon", "swapoff", "reboot", "acct", "quotactl", "lookup_dcookie",
    "syslog", "vhangup",
)  # fmt: skip


def build() -> object:
    rules = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    deny = seccomp.ERRNO(errno.EPERM)
    for name in DENIED:
        try:
            rules.add_rule(deny, name)
        except (RuntimeError, ValueError):
            continue  # not a syscall on this architecture
    rules.add_rule(seccomp.ERRNO(errno.EAFNOSUPPORT), "socket", seccomp.Arg(0, seccomp.NE, AF_UNIX))
    # New namespaces through clone(2); clone3 hides its flags in memory, so it is refused with
    # ENOSYS and the C library falls back to clone.
    rules.add_rule(deny, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER))
    rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    return rules


def main(argv: list[str]) -> int:
    with Path(argv[1]).open("wb") as out:
        build().export_bpf(out)  # type: ignore[attr-defined]
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
