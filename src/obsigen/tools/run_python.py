"""``run_python``: the assistant runs Python in a fresh sandbox (docs/sandbox.md).

Policy and audit happen in the turn, like for every server tool; this module turns a call into
a sandbox run and the run's result into text the model can read.
"""

from __future__ import annotations

from typing import Any

from obsigen.artifacts.outputs import SavedOutputs, save_outputs
from obsigen.artifacts.store import ArtifactOrigin, ArtifactStore
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


def describe(result: RunResult, outputs: SavedOutputs | None = None) -> str:
    """The run as the model reads it: status first, then the streams, then the files.

    With ``outputs``, the files are those kept as artifacts (by id) and those refused."""
    lines = [f"exit code: {result.exit_code}"]
    if result.killed_reason is not None:
        lines.append(_STOPPED[result.killed_reason])
    if result.stdout:
        truncated = " (truncated)" if result.stdout_truncated else ""
        lines += [f"stdout{truncated}:", _clip(result.stdout)]
    if result.stderr:
        truncated = " (truncated)" if result.stderr_truncated else ""
        lines += [f"stderr{truncated}:", _clip(result.stderr)]
    if outputs is None:
        for artifact in result.artifacts:
            lines.append(
                f"file: /output/{artifact.name} ({artifact.media_type}, {artifact.size} bytes)"
            )
    else:
        for file, row in outputs.saved:
            lines.append(
                f"file: /output/{file.name} ({row.content_type}, {row.size} bytes) saved as "
                f"artifact {row.id} ({row.name!r}); the user can download it at "
                f"/api/v1/artifacts/{row.id}"
            )
    rejected_files = (*result.rejected_artifacts, *(outputs.refused if outputs else ()))
    for rejected in rejected_files:
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

    def __init__(self, runner: SandboxRunner, artifacts: ArtifactStore | None = None) -> None:
        self._runner = runner
        # Where /output files are kept for the user; None: they are only described.
        self._artifacts = artifacts

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
        if self._artifacts is None or not result.artifacts:
            return ToolResult(content=describe(result))
        origin = ArtifactOrigin(
            conversation_id=context.conversation_id or None,
            interaction_id=context.interaction_id or None,
            source="tool:run_python",
        )
        outputs = await save_outputs(
            self._artifacts, context.principal, result.artifacts, origin=origin
        )
        return ToolResult(
            content=describe(result, outputs),
            artifacts=tuple(row.id for _, row in outputs.saved),
        )
