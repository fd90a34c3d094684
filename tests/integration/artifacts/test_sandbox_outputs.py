"""Files a run leaves in /output become the caller's artifacts, under the upload rules:
through POST /api/v1/code/run and the run_python tool, with a scripted runner here and the
real sandbox where one runs."""

from __future__ import annotations

import base64
import io
import re

import pytest
from PIL import Image
from tests.conftest import Platform, require_service
from tests.fakes.openai_upstream import FakeReply, FakeToolCall
from tests.integration.artifacts.artifact_helpers import artifact_store, principal_of

from obsigen.artifacts.outputs import OutputLimits, save_outputs
from obsigen.artifacts.slides import DeckSpec, make_slides
from obsigen.artifacts.store import ArtifactOrigin
from obsigen.sandbox.detect import detect
from obsigen.sandbox.interfaces import Artifact, BackendName, RunRequest, RunResult
from obsigen.tools.run_python import RunPythonTool


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buffer, "PNG")
    return buffer.getvalue()


class ScriptedRunner:
    """Stands in for the sandbox: answers every run with the files given."""

    def __init__(self, files: tuple[Artifact, ...]) -> None:
        self.files = files

    @property
    def backend(self) -> BackendName:
        return "bwrap"

    def warm(self) -> None:
        return None

    async def run(self, request: RunRequest) -> RunResult:
        return RunResult("done\n", "", 0, 3, "bwrap", artifacts=self.files)

    async def aclose(self) -> None:
        return None


async def outputs_of_a_run() -> tuple[Artifact, ...]:
    pptx = await make_slides(DeckSpec.model_validate({"title": "T", "slides": [{"title": "S"}]}))
    return (
        Artifact("plots/chart.png", "image/png", png_bytes()),
        Artifact("table.csv", "text/csv", b"a,b\n1,2\n"),
        Artifact("deck.pptx", "application/zip", pptx),
        # What the sandbox's own sniffing lets through but the upload rules refuse:
        Artifact("tool.exe", "text/plain", b"just text"),
        Artifact("fake.png", "image/png", b"\x7fELF\x02\x01\x01" + b"\x00" * 64),
        Artifact("page.txt", "text/plain", b"<html><script>alert(1)</script></html>"),
        Artifact("inv\u202egnp.csv", "text/csv", b"x\n"),
    )


async def test_code_run_outputs_become_artifacts_and_unsafe_ones_do_not(
    platform: Platform,
) -> None:
    key = await platform.api_key()
    files = await outputs_of_a_run()
    saved, platform.services.sandbox = platform.services.sandbox, ScriptedRunner(files)
    try:
        response = await platform.client.post(
            "/api/v1/code/run",
            json={"language": "python", "code": "make_files()"},
            headers=platform.auth(key),
        )
    finally:
        platform.services.sandbox = saved

    assert response.status_code == 200, response.text
    outcome = {a["name"]: (a["id"], a["not_saved"]) for a in response.json()["artifacts"]}
    for name in ("plots/chart.png", "table.csv", "deck.pptx", "inv\u202egnp.csv"):
        assert outcome[name][0] is not None, name
        assert outcome[name][1] is None
    assert outcome["tool.exe"] == (None, "type not allowed")
    assert outcome["fake.png"] == (None, "executable content is not accepted")
    assert outcome["page.txt"] == (None, "HTML, SVG and XML content is not accepted")

    listed = await platform.client.get("/api/v1/artifacts", headers=platform.auth(key))
    by_name = {a["name"]: a for a in listed.json()}
    assert set(by_name) == {"chart.png", "table.csv", "deck.pptx", "invgnp.csv"}
    assert {a["kind"] for a in by_name.values()} == {"sandbox"}
    assert by_name["deck.pptx"]["content_type"].endswith("presentationml.presentation")
    chart = await platform.client.get(
        f"/api/v1/artifacts/{outcome['plots/chart.png'][0]}", headers=platform.auth(key)
    )
    assert chart.headers["content-type"] == "image/png"
    assert chart.content == files[0].data


async def test_run_python_names_the_artifacts_to_the_model(platform: Platform) -> None:
    runner = ScriptedRunner((Artifact("chart.png", "image/png", png_bytes()),))
    platform.services.tools.replace(RunPythonTool(runner, artifact_store(platform)))
    key = await platform.api_key()
    platform.upstream.script = [
        FakeReply(tool_calls=[FakeToolCall("run_python", {"code": "plot()"})]),
        FakeReply(answer="Here is the chart."),
    ]

    response = await platform.chat(key, "Plot it.")

    assert response.status_code == 200, response.text
    content = platform.upstream.chat_requests[1].body["messages"][-1]["content"]
    match = re.search(
        r"file: /output/chart.png \(image/png, \d+ bytes\) saved as artifact (\w+)", content
    )
    assert match, content
    listed = await platform.client.get("/api/v1/artifacts", headers=platform.auth(key))
    (meta,) = listed.json()
    assert meta["id"] == match.group(1)
    assert meta["conversation_id"] == response.json()["conversation_id"]


async def test_count_and_size_limits_apply_per_run(platform: Platform) -> None:
    principal = await principal_of(platform, await platform.api_key())
    files = (
        *(Artifact(f"f{i}.csv", "text/csv", b"x" * 600) for i in range(4)),
        Artifact("empty.csv", "text/csv", b""),
    )

    result = await save_outputs(
        artifact_store(platform),
        principal,
        files,
        origin=ArtifactOrigin(source="test"),
        limits=OutputLimits(max_files=3, max_file_bytes=1000, max_total_bytes=1500),
    )

    assert [row.name for _, row in result.saved] == ["f0.csv", "f1.csv"]
    assert result.refused == (
        "f2.csv: files larger than 1500 bytes together",
        "f3.csv: files larger than 1500 bytes together",
        "empty.csv: empty",
    )
    big = await save_outputs(
        artifact_store(platform),
        principal,
        (Artifact("big.csv", "text/csv", b"x" * 2000),),
        origin=ArtifactOrigin(source="test"),
        limits=OutputLimits(max_file_bytes=1000),
    )
    assert big.refused == ("big.csv: larger than 1000 bytes",)


@pytest.fixture
def sandboxed(platform: Platform) -> Platform:
    require_service("a sandbox backend (gVisor or bubblewrap)", detect().backend is not None)
    assert platform.services.sandbox is not None
    return platform


async def test_a_real_sandbox_output_file_appears_as_an_artifact(sandboxed: Platform) -> None:
    key = await sandboxed.api_key()
    code = "open('/output/result.csv', 'w').write('n,square\\n3,9\\n')\n"

    response = await sandboxed.client.post(
        "/api/v1/code/run",
        json={"language": "python", "code": code},
        headers=sandboxed.auth(key),
    )

    assert response.status_code == 200, response.text
    (artifact,) = response.json()["artifacts"]
    assert artifact["id"] is not None, artifact
    assert base64.b64decode(artifact["content_base64"]) == b"n,square\n3,9\n"
    download = await sandboxed.client.get(
        f"/api/v1/artifacts/{artifact['id']}", headers=sandboxed.auth(key)
    )
    assert download.status_code == 200
    assert download.content == b"n,square\n3,9\n"
    assert download.headers["content-type"] == "text/csv; charset=utf-8"
