"""An in-memory sandbox backend: runs nothing, records what the pool asks of it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from obsigen.sandbox.interfaces import BackendName, Limits, RunRequest, RunResult, SandboxFailed


@dataclass
class FakeSandbox:
    number: int
    limits: Limits
    backend: FakeBackend
    runs: int = 0
    discarded: bool = False

    async def run(self, request: RunRequest) -> RunResult:
        self.runs += 1
        if self.runs > 1:
            raise AssertionError(f"sandbox {self.number} used twice")
        if self.backend.run_delay_s:
            await asyncio.sleep(self.backend.run_delay_s)
        return RunResult(
            stdout=f"ran in sandbox {self.number}\n",
            stderr="",
            exit_code=0,
            duration_ms=int(self.backend.run_delay_s * 1000),
            backend="bwrap",
        )

    async def discard(self) -> None:
        self.discarded = True


@dataclass
class FakeBackend:
    run_delay_s: float = 0.0
    prepare_delay_s: float = 0.0
    fail_prepares: int = 0  # the next N prepares fail
    made: list[FakeSandbox] = field(default_factory=list)
    closed: bool = False

    @property
    def name(self) -> BackendName:
        return "bwrap"

    async def prepare(self, limits: Limits) -> FakeSandbox:
        if self.prepare_delay_s:
            await asyncio.sleep(self.prepare_delay_s)
        if self.fail_prepares:
            self.fail_prepares -= 1
            raise SandboxFailed("fake prepare failure")
        sandbox = FakeSandbox(len(self.made), limits, self)
        self.made.append(sandbox)
        return sandbox

    async def aclose(self) -> None:
        self.closed = True
