"""What a sandbox run is: the request, its limits, its result, and the runner that does it.

Three backends implement :class:`SandboxBackend` (gVisor, bubblewrap, Kubernetes Pods); the
pool turns any of them into a :class:`SandboxRunner`, the one thing the rest of the platform
sees.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from obsigen.errors import InvalidInput, Unavailable

BackendName = Literal["gvisor", "bwrap", "kubernetes"]

# Why a run was stopped from outside; None when the code ended on its own.
KilledReason = Literal["timeout", "memory", "output_limit", "file_size", "cpu_time"]

MAX_CODE_BYTES = 256 * 1024
MAX_INPUT_FILES = 32
MAX_INPUT_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-run limits. Memory, pids and CPU are fixed when a sandbox is created."""

    wall_time_s: float = 30.0
    memory_mb: int = 512
    cpus: float = 1.0
    # Process count inside the run; a fork bomb gets EAGAIN past this.
    pids: int = 64
    open_files: int = 256
    # Largest single file the code may write (RLIMIT_FSIZE).
    file_size_mb: int = 32
    # Everything the run may write: workspace, /tmp and /output together.
    workspace_mb: int = 64
    # Kept per stream; past it the run is stopped and the stream marked truncated.
    output_bytes: int = 64 * 1024
    max_artifacts: int = 16
    artifact_bytes: int = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class RunRequest:
    code: str
    # Name -> content; copied in read-only under /input.
    files: Mapping[str, bytes] = field(default_factory=dict)
    # None: the runner's limits (a warm sandbox); anything else gets a sandbox made for it.
    limits: Limits | None = None


@dataclass(frozen=True, slots=True)
class Artifact:
    name: str
    media_type: str
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True, slots=True)
class RunResult:
    stdout: str
    stderr: str
    exit_code: int  # the process's status; 128 + N when it died of signal N
    duration_ms: int
    backend: BackendName
    timed_out: bool = False
    killed_reason: KilledReason | None = None
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    artifacts: tuple[Artifact, ...] = ()
    # "name: why" for each file in /output that did not come back.
    rejected_artifacts: tuple[str, ...] = ()


class SandboxRunner(Protocol):
    """Runs code in a fresh sandbox that is used once and torn down."""

    @property
    def backend(self) -> BackendName: ...

    def warm(self) -> None:
        """Start preparing sandboxes ahead of the first run (needs a running event loop)."""

    async def run(self, request: RunRequest) -> RunResult: ...

    async def aclose(self) -> None: ...


class PreparedSandbox(Protocol):
    """A sandbox made ahead of time. ``run`` is called at most once; ``discard`` always."""

    async def run(self, request: RunRequest) -> RunResult: ...

    async def discard(self) -> None: ...


class SandboxBackend(Protocol):
    @property
    def name(self) -> BackendName: ...

    async def prepare(self, limits: Limits) -> PreparedSandbox: ...

    async def aclose(self) -> None: ...


class SandboxBusy(Unavailable):
    """Every sandbox slot is taken; the caller may retry after ``retry_after_s``."""

    type_slug = "sandbox-busy"
    title = "Code execution is busy"

    def __init__(self, detail: str = "", retry_after_s: int = 1) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


class SandboxUnavailable(Unavailable):
    type_slug = "sandbox-unavailable"
    title = "Code execution is not available"


class SandboxFailed(Unavailable):
    """The sandbox itself failed (not the code in it); says nothing about the host."""

    type_slug = "sandbox-failed"
    title = "The sandbox could not run the code"


class SandboxInputError(InvalidInput):
    pass


def check_request(request: RunRequest) -> None:
    """Refuse what no sandbox should be made for; file names are checked in ``workspace``."""
    if len(request.code.encode()) > MAX_CODE_BYTES:
        raise SandboxInputError(f"code is longer than {MAX_CODE_BYTES} bytes")
    if "\x00" in request.code:
        raise SandboxInputError("code contains a NUL character")
    if len(request.files) > MAX_INPUT_FILES:
        raise SandboxInputError(f"more than {MAX_INPUT_FILES} input files")
    if sum(len(data) for data in request.files.values()) > MAX_INPUT_BYTES:
        raise SandboxInputError(f"input files larger than {MAX_INPUT_BYTES} bytes together")
