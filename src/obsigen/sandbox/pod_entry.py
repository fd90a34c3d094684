"""What a Kubernetes sandbox pod runs: the user's code under limits, then one result line.

This file is copied into the run's ConfigMap and executed by the sandbox image's Debian Python
(``python3 -I``), so it uses the standard library only and imports nothing from obsigen.

Pod logs merge stdout and stderr and outlive nothing once the pod is deleted, so the code's
streams are captured here (capped, like the other backends) and everything the server needs
comes back as the last log line: ``OBSIGEN-RESULT:<nonce>:<base64 JSON>``. The server treats that
line as untrusted input: code in the pod could print a line of its own, but it could only forge
what it could already return, and the server re-checks sizes, names and artifact types.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import resource
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

RESULT_PREFIX = "OBSIGEN-RESULT"
MAX_DEPTH = 3
CHUNK = 64 * 1024


def _set_limits(limits: dict[str, int]) -> None:
    # Runs in the child between fork and exec: the code inherits them, this script does not.
    for name, value in limits.items():
        resource.setrlimit(getattr(resource, name), (value, value))


class _Capture:
    def __init__(self, stream: Any, cap: int, on_overflow: Any) -> None:
        self.data = bytearray()
        self.truncated = False
        self._stream = stream
        self._cap = cap
        self._on_overflow = on_overflow
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        # Read to EOF even past the cap, so the writer never blocks on a full pipe.
        while chunk := self._stream.read(CHUNK):
            if self.truncated:
                continue
            room = self._cap - len(self.data)
            self.data += chunk[:room]
            if len(chunk) > room:
                self.truncated = True
                self._on_overflow()


def _outputs(output_dir: str, max_files: int, max_bytes: int) -> tuple[list[Any], list[str]]:
    found: list[Any] = []
    rejected: list[str] = []
    total = 0
    for directory, subdirs, names in os.walk(output_dir, followlinks=False):
        relative_dir = os.path.relpath(directory, output_dir)
        depth = 0 if relative_dir == "." else relative_dir.count(os.sep) + 1
        if depth >= MAX_DEPTH:
            subdirs.clear()
        for name in sorted(names):
            path = Path(directory, name)
            relative = path.relative_to(output_dir).as_posix()
            info = path.lstat()
            if not stat.S_ISREG(info.st_mode):
                rejected.append(f"{relative}: not a regular file")
            elif len(found) >= max_files:
                rejected.append(f"{relative}: more than {max_files} artifacts")
            elif total + info.st_size > max_bytes:
                rejected.append(f"{relative}: too large to return from a pod")
            else:
                with path.open("rb") as handle:
                    data = handle.read(max_bytes - total + 1)
                total += len(data)
                found.append({"name": relative, "data": base64.b64encode(data).decode()})
    return found, rejected


def main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    code = Path(spec["code_path"]).read_bytes()
    reasons: list[str] = []
    child = subprocess.Popen(
        [sys.executable, "-I", "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=spec["workdir"],
        env=dict(item.split("=", 1) for item in spec["env"]),
        # Safe: no thread exists yet when the child forks.
        preexec_fn=lambda: _set_limits(spec["rlimits"]),
        start_new_session=True,
    )

    def kill_group() -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGKILL)

    def stop(reason: str) -> None:
        if not reasons:
            reasons.append(reason)
        kill_group()

    cap = spec["output_bytes"]
    out = _Capture(child.stdout, cap, lambda: stop("output_limit"))
    err = _Capture(child.stderr, cap, lambda: stop("output_limit"))
    started = time.monotonic()
    assert child.stdin is not None
    try:
        child.stdin.write(code)
        child.stdin.close()
    except (BrokenPipeError, ConnectionResetError):
        pass
    try:
        status = child.wait(timeout=spec["wall_time_s"])
    except subprocess.TimeoutExpired:
        stop("timeout")
        status = child.wait()
    # The group may outlive its leader (a forked child holding the pipes open).
    kill_group()
    out.thread.join(5)
    err.thread.join(5)
    duration_ms = int((time.monotonic() - started) * 1000)
    artifacts, rejected = _outputs(spec["output_dir"], spec["max_artifacts"], spec["result_bytes"])
    result = {
        "stdout": base64.b64encode(bytes(out.data)).decode(),
        "stderr": base64.b64encode(bytes(err.data)).decode(),
        "stdout_truncated": out.truncated,
        "stderr_truncated": err.truncated,
        "exit_code": 128 - status if status < 0 else status,
        "killed_reason": reasons[0] if reasons else None,
        "duration_ms": duration_ms,
        "artifacts": artifacts,
        "rejected": rejected,
    }
    encoded = base64.b64encode(json.dumps(result).encode()).decode()
    sys.stdout.write(f"\n{RESULT_PREFIX}:{spec['nonce']}:{encoded}\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
