"""Run ``runsc create`` and outlive it, to hand back the sandbox's exit status.

    python -I -S reaper.py PID_FILE STATUS_FD runsc ... create --pid-file PID_FILE ... ID

``runsc create`` starts the sandbox and exits; the sandbox is re-parented to the nearest
subreaper, which this process makes itself. It writes create's exit code on STATUS_FD, closes
its own stdio (the sandbox holds the pipes, so the caller sees EOF when the run ends), reaps
every orphan (sandbox, gofer, ptrace stubs) and exits with the sandbox's status: the code the
program exited with (128 + N when signal N ended the program inside the sandbox), or, when the
sandbox process itself was killed by signal N (a limit, the OOM killer, someone outside), it
dies of signal N too, so the caller can tell the two apart. This is what ``runsc wait`` would
report, without its 1.5 s of polling.

Run as a script with the standard library only; it is not imported.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36
CREATE_FAILED = 125
NO_STATUS = 126


def main(argv: list[str]) -> int:
    pid_file, status_fd, command = argv[1], int(argv[2]), argv[3:]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        os.write(status_fd, b"subreaper refused\n")
        return CREATE_FAILED
    created = subprocess.call(command)  # noqa: S603 - the runner's own argv
    os.write(status_fd, b"%d\n" % created)
    os.close(status_fd)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    if created != 0:
        return CREATE_FAILED
    try:
        sandbox_pid = int(Path(pid_file).read_text().strip())
    except (OSError, ValueError):
        sandbox_pid = -1
    status = None
    while True:
        try:
            pid, wait_status = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        if pid == sandbox_pid:
            status = wait_status
    if status is None:
        return NO_STATUS
    if os.WIFSIGNALED(status):
        return die_of(os.WTERMSIG(status))
    return os.WEXITSTATUS(status)


def die_of(number: int) -> int:
    """End this process by signal ``number`` (no core file); 128 + N should it survive."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    with contextlib.suppress(OSError, ValueError):  # SIGKILL and SIGSTOP have no handler
        signal.signal(number, signal.SIG_DFL)
    os.kill(os.getpid(), number)
    return 128 + number


if __name__ == "__main__":
    sys.exit(main(sys.argv))
