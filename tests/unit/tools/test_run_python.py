"""The run_python tool: arguments checked, results described for the model, failures told."""

from __future__ import annotations

import pytest

from obsigen.authz.permissions import Role
from obsigen.authz.principal import Principal
from obsigen.sandbox.interfaces import (
    Artifact,
    BackendName,
    RunRequest,
    RunResult,
    SandboxBusy,
    SandboxInputError,
)
from obsigen.tools.interfaces import ToolContext, ToolInputError
from obsigen.tools.registry import default_registry
from obsigen.tools.run_python import STREAM_CHARS, RunPythonTool, describe

CONTEXT = ToolContext(Principal("t1", "apikey", "k1", frozenset({Role.MEMBER})), "c1", "i1")


class ScriptedRunner:
    """A runner that answers with a prepared result or raises a prepared error."""

    def __init__(self, answer: RunResult | Exception) -> None:
        self.answer = answer
        self.requests: list[RunRequest] = []

    @property
    def backend(self) -> BackendName:
        return "gvisor"

    def warm(self) -> None:
        return None

    async def run(self, request: RunRequest) -> RunResult:
        self.requests.append(request)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    async def aclose(self) -> None:
        return None


def result(**fields: object) -> RunResult:
    base: dict[str, object] = {
        "stdout": "", "stderr": "", "exit_code": 0, "duration_ms": 5, "backend": "gvisor",
    }  # fmt: skip
    return RunResult(**(base | fields))  # type: ignore[arg-type]


async def test_the_code_runs_and_the_model_reads_the_result() -> None:
    runner = ScriptedRunner(result(stdout="42\n"))
    tool = RunPythonTool(runner)

    answer = await tool.run({"code": "print(6 * 7)"}, CONTEXT)

    assert runner.requests == [RunRequest("print(6 * 7)")]
    assert answer.content == "exit code: 0\nstdout:\n42\n"


def test_the_description_says_why_a_run_stopped_and_what_came_back() -> None:
    text = describe(
        result(
            stdout="x" * (STREAM_CHARS + 10),
            stdout_truncated=True,
            stderr="Killed",
            exit_code=137,
            killed_reason="memory",
            artifacts=(Artifact("chart.png", "image/png", b"\x89PNG"),),
            rejected_artifacts=("page.html: type not allowed",),
        )
    )
    assert text.startswith("exit code: 137\nstopped: it ran out of memory\nstdout (truncated):")
    assert "[... 10 more characters]" in text
    assert "file: /output/chart.png (image/png, 4 bytes)" in text
    assert "file not returned: page.html: type not allowed" in text


def test_a_silent_run_says_so() -> None:
    assert describe(result()) == "exit code: 0\n(no output)"


@pytest.mark.parametrize("arguments", [{}, {"code": ""}, {"code": "   "}, {"code": 7}])
async def test_bad_arguments_go_back_to_the_model(arguments: dict[str, object]) -> None:
    with pytest.raises(ToolInputError):
        await RunPythonTool(ScriptedRunner(result())).run(arguments, CONTEXT)


@pytest.mark.parametrize(
    "error", [SandboxBusy("all slots busy"), SandboxInputError("code contains a NUL")]
)
async def test_sandbox_errors_go_back_to_the_model(error: Exception) -> None:
    with pytest.raises(ToolInputError, match=r"busy|NUL"):
        await RunPythonTool(ScriptedRunner(error)).run({"code": "print(1)"}, CONTEXT)


def test_the_tool_is_offered_only_with_a_sandbox() -> None:
    assert "run_python" not in default_registry()
    assert "run_python" in default_registry(ScriptedRunner(result()))
    tool = default_registry(ScriptedRunner(result())).get("run_python")
    assert tool is not None
    assert tool.sensitivity == "medium"
