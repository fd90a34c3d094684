"""``run_python``: the assistant runs Python in a fresh sandbox (docs/sandbox.md).

Policy and audit happen in the turn, like for every server tool; this module turns a call into
a sandbox run and the run's result into text the model can read.
"""

from __future__ import annotations

from typing import Any

from obsigen.inference.interfaces import ToolSpec
from obsigen.sandbox.interfaces import (
    MAX_CODE_BYTES,
    RunRequest,
    RunResult,
    SandboxBusy,
    SandboxFailed,
    SandboxInputError,
    SandboxRunner,
    SandboxUnavailable,
)
from obsigen.tools.interfaces import Sensitivity, ToolContext, ToolInputError, ToolResult

# What the model gets to read of each stream (the sandbox keeps more for the API).
STREAM_CHARS = 6000

_STOPPED = {
    "timeout": "stopped: it ran past the time limit",
    "memory": "stopped: it ran out of memory",
    "output_limit": "stopped: it printed more than the output limit",
    "file_size": "stopped: it wrote a file larger than the limit",
    "cpu_time": "stopped: it used up its CPU time",
}


def _clip(text: str) -> str:
    if len(text) <= STREAM_CHARS:
        return text
    return text[:STREAM_CHARS] + f"\n[... {len(text) - STREAM_CHARS} more characters]"


def describe(result: RunResult) -> str:
    """The run as the model reads it: status first, then the streams, then the files."""
    lines = [f"exit code: {result.exit_code}"]
    if result.killed_reason is not None:
        lines.append(_STOPPED[result.killed_reason])
    if result.stdout:
        truncated = " (truncated)" if result.stdout_truncated else ""
        lines += [f"stdout{truncated}:", _clip(result.stdout)]
    if result.stderr:
        truncated = " (truncated)" if result.stderr_truncated else ""
        lines += [f"stderr{truncated}:", _clip(result.stderr)]
    for artifact in result.artifacts:
        lines.append(
            f"file: /output/{artifact.name} ({artifact.media_type}, {artifact.size} bytes)"
        )
    for rejected in result.rejected_artifacts:
        lines.append(f"file not returned: {rejected}")
    if len(lines) == 1:
        lines.append("(no output)")
    return "\n".join(lines)


class RunPythonTool:
    # Runs arbitrary code, but isolated: no network, no host files, nothing kept.
    sensitivity: Sensitivity = "medium"
    spec = ToolSpec(
        name="run_python",
        description=(
            "Run a Python 3.11 program in an isolated sandbox and get its stdout, stderr and exit "
            "code. numpy, pandas and matplotlib are available; there is no network. The working "
            "directory is /workspace; files saved under /output are returned. Print what you "
            "need to see."
        ),
        parameters={
            "type": "object",
            "properties": {
                "code": {"type": "string", "minLength": 1, "maxLength": MAX_CODE_BYTES},
            },
            "required": ["code"],
            "additionalProperties": False,
        },
    )

    def __init__(self, runner: SandboxRunner) -> None:
        self._runner = runner

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        code = arguments.get("code")
        if not isinstance(code, str) or not code.strip():
            raise ToolInputError("'code' must be a non-empty string")
        try:
            result = await self._runner.run(RunRequest(code=code))
        except SandboxInputError as exc:
            raise ToolInputError(exc.detail) from exc
        except (SandboxBusy, SandboxUnavailable, SandboxFailed) as exc:
            # The model is told, and may retry or answer without running code.
            raise ToolInputError(f"code execution failed: {exc.detail}") from exc
        return ToolResult(content=describe(result))
