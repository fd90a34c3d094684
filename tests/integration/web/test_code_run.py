"""POST /api/v1/code/run and the run_python tool, through HTTP, on the backend detected here."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import zipfile
from typing import Any

import pytest
from tests.conftest import Platform, require_service
from tests.fakes.openai_upstream import FakeReply, FakeToolCall

from obsigen.config import SandboxSettings
from obsigen.sandbox.detect import detect
from obsigen.sandbox.factory import build_runner

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
PROBLEM = "application/problem+json"


@pytest.fixture
async def sandboxed(platform: Platform) -> Platform:
    require_service("a sandbox backend (gVisor or bubblewrap)", detect().backend is not None)
    assert platform.services.sandbox is not None
    return platform


def audit_events(platform: Platform) -> list[dict[str, Any]]:
    directory = platform.settings.paths.data_dir / "audit"
    return [
        json.loads(line)
        for path in sorted(directory.glob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]


async def run_code(platform: Platform, key: str, **body: Any) -> Any:
    payload = {"language": "python", **body}
    return await platform.client.post("/api/v1/code/run", json=payload, headers=platform.auth(key))


async def test_code_runs_with_files_in_and_artifacts_out(sandboxed: Platform) -> None:
    key = await sandboxed.api_key()
    code = (
        "data = open('/input/numbers.csv').read()\n"
        "print(sum(int(x) for x in data.split(',')))\n"
        f"open('/output/chart.png', 'wb').write({PNG!r})\n"
    )
    files = [{"name": "numbers.csv", "content_base64": base64.b64encode(b"1,2,39").decode()}]

    response = await run_code(sandboxed, key, code=code, files=files)

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["stdout"], body["stderr"], body["exit_code"]) == ("42\n", "", 0)
    assert body["duration_ms"] >= 0
    assert body["killed_reason"] is None
    [artifact] = body["artifacts"]
    assert (artifact["name"], artifact["media_type"]) == ("chart.png", "image/png")
    assert base64.b64decode(artifact["content_base64"]) == PNG

    events = [e for e in audit_events(sandboxed) if e["data"].get("tool") == "run_python"]
    assert [e["type"] for e in events] == ["policy.decision", "tool.call"]
    call = events[-1]
    assert call["outcome"] == "success"
    assert call["data"]["exit_code"] == 0
    assert call["data"]["code_digest"].startswith("sha256:")
    assert code not in json.dumps(call)  # digests, never the code itself
    assert call["data"]["artifacts"][0]["name"] == "chart.png"


async def test_a_failing_program_is_a_result_not_an_error(sandboxed: Platform) -> None:
    key = await sandboxed.api_key()

    response = await run_code(sandboxed, key, code="raise SystemExit('bad input')")

    assert response.status_code == 200
    body = response.json()
    assert body["exit_code"] == 1
    assert "bad input" in body["stderr"]
    assert audit_events(sandboxed)[-1]["outcome"] == "failure"


@pytest.mark.parametrize(
    "body",
    [
        {"language": "ruby", "code": "puts 1"},
        {"language": "python", "code": ""},
        {"language": "python", "code": "print(1)", "extra": True},
        {"language": "python", "code": "print(1)\u0000"},
        {"language": "python", "code": "1", "files": [{"name": "../x", "content_base64": ""}]},
        {"language": "python", "code": "1", "files": [{"name": "a.txt", "content_base64": "!!"}]},
        {"language": "python", "code": "1", "files": [{"name": "a", "content_base64": ""}] * 2},
        {"language": "python", "code": "x" * (300 * 1024)},
    ],
)
async def test_bad_requests_get_422(sandboxed: Platform, body: dict[str, Any]) -> None:
    key = await sandboxed.api_key()
    response = await sandboxed.client.post(
        "/api/v1/code/run", json=body, headers=sandboxed.auth(key)
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM


async def test_anonymous_callers_are_refused(platform: Platform) -> None:
    response = await platform.client.post(
        "/api/v1/code/run", json={"language": "python", "code": "print(1)"}
    )
    assert response.status_code == 401


async def test_without_a_sandbox_the_endpoint_says_unavailable(platform: Platform) -> None:
    key = await platform.api_key()
    saved, platform.services.sandbox = platform.services.sandbox, None
    try:
        response = await run_code(platform, key, code="print(1)")
    finally:
        platform.services.sandbox = saved
    assert response.status_code == 503
    assert response.json()["type"].endswith("/sandbox-unavailable")


async def test_a_full_sandbox_answers_503_with_retry_after(sandboxed: Platform) -> None:
    key = await sandboxed.api_key()
    backend = sandboxed.services.sandbox
    assert backend is not None
    busy = build_runner(
        SandboxSettings(backend=backend.backend, pool_size=0, concurrency=1, queue_timeout_s=0.1)
    )
    saved, sandboxed.services.sandbox = sandboxed.services.sandbox, busy
    try:
        slow = asyncio.ensure_future(run_code(sandboxed, key, code="import time; time.sleep(2)"))
        await asyncio.sleep(0.5)
        response = await run_code(sandboxed, key, code="print(1)")
        assert (await slow).status_code == 200
    finally:
        sandboxed.services.sandbox = saved
        assert busy is not None
        await busy.aclose()
    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"].endswith("/sandbox-busy")
    assert int(response.headers["retry-after"]) >= 1


async def test_the_assistant_runs_python_through_the_tool(sandboxed: Platform) -> None:
    key = await sandboxed.api_key()
    sandboxed.upstream.script = [
        FakeReply(tool_calls=[FakeToolCall("run_python", {"code": "print(6 * 7)"})]),
        FakeReply(answer="The answer is 42."),
    ]

    response = await sandboxed.chat(key, "What is six times seven? Use Python.")

    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "The answer is 42."
    offered = {t["function"]["name"] for t in sandboxed.upstream.chat_requests[0].body["tools"]}
    assert "run_python" in offered
    tool_message = sandboxed.upstream.chat_requests[1].body["messages"][-1]
    assert tool_message["role"] == "tool"
    assert tool_message["content"].startswith("exit code: 0\nstdout:\n42")
    calls = [
        e for e in audit_events(sandboxed)
        if e["type"] == "tool.call" and e["data"].get("tool") == "run_python"
    ]  # fmt: skip
    assert calls[-1]["data"]["status"] == "ok"


async def test_user_code_makes_slides_with_a_chart(sandboxed: Platform) -> None:
    """The runtime has numpy, pandas, matplotlib and python-pptx (make test installs it)."""
    key = await sandboxed.api_key()
    code = (
        "import io\n"
        "import matplotlib.pyplot as plt, numpy as np, pandas as pd\n"
        "from pptx import Presentation\n"
        "from pptx.util import Inches\n"
        "frame = pd.DataFrame({'q': [1, 2, 3, 4], 'sales': np.array([3, 5, 4, 6])})\n"
        "figure, axes = plt.subplots()\n"
        "axes.plot(frame['q'], frame['sales'])\n"
        "png = io.BytesIO(); figure.savefig(png, format='png'); png.seek(0)\n"
        "deck = Presentation()\n"
        "slide = deck.slides.add_slide(deck.slide_layouts[5])\n"
        "slide.shapes.title.text = 'Sales'\n"
        "slide.shapes.add_picture(png, Inches(1), Inches(1.5), width=Inches(8))\n"
        "deck.save('/output/sales.pptx')\n"
        "print(int(frame['sales'].sum()))\n"
    )

    response = await run_code(sandboxed, key, code=code)

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["stdout"], body["exit_code"]) == ("18\n", 0), body["stderr"]
    [artifact] = body["artifacts"]
    assert artifact["name"] == "sales.pptx"
    assert artifact["media_type"].endswith("presentationml.presentation")
    with zipfile.ZipFile(io.BytesIO(base64.b64decode(artifact["content_base64"]))) as deck:
        names = deck.namelist()
    assert "ppt/slides/slide1.xml" in names
    assert any(name.startswith("ppt/media/") and name.endswith(".png") for name in names)
