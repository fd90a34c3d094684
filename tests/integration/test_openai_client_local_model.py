"""The spine's promise: `obsigen serve` on the embedded defaults answers the official openai client.

A real server process (uvicorn), the embedded SmolLM2 model, SQLite, keys from the CLI.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

OBSIGEN = str(Path(sys.executable).parent / "obsigen")
MODEL = "smollm2-135m-instruct"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [OBSIGEN, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    data_dir = tmp_path_factory.mktemp("embedded") / "var"
    env = {**os.environ, "OBSIGEN_PATHS__DATA_DIR": str(data_dir)}
    env.pop("OBSIGEN_CONFIG", None)
    _cli(env, "migrate")
    _cli(env, "tenant", "create", "acme")
    key = json.loads(_cli(env, "apikey", "create", "--tenant", "acme", "--name", "sdk", "--json"))[
        "key"
    ]
    port = _free_port()
    log = (data_dir.parent / "server.log").open("w")
    process = subprocess.Popen(
        [OBSIGEN, "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, "obsigen serve exited; see server.log"
            try:
                if httpx.get(f"{base}/readyz", timeout=30).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "obsigen serve did not become ready"
            time.sleep(0.2)
        yield base, key
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


def test_openai_client_gets_an_answer_and_a_stream(server: tuple[str, str]) -> None:
    base, key = server
    client = openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0, timeout=120)

    assert MODEL in [m.id for m in client.models.list()]

    completion = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=48,
    )
    answer = completion.choices[0].message.content
    assert answer
    assert answer.strip()
    assert completion.usage is not None
    assert completion.usage.completion_tokens > 0
    detail = httpx.get(
        f"{base}/api/v1/conversations/{completion.model_extra['conversation_id']}",  # type: ignore[index]
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    ).json()
    # The embedded model is not offered the server's tools unless a request names one.
    assert detail["tool_calls"] == []

    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Write one sentence about the sea."}],
            max_tokens=48,
            stream=True,
        )
    )
    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert len(pieces) > 1
    assert "".join(pieces).strip()

    listed = httpx.get(
        f"{base}/api/v1/conversations", headers={"Authorization": f"Bearer {key}"}, timeout=10
    ).json()
    titles = {c["title"] for c in listed}
    assert "What is the capital of France?" in titles
    assert "Write one sentence about the sea." in titles


def test_the_embedded_model_calls_the_calculator_with_valid_arguments(
    server: tuple[str, str],
) -> None:
    base, key = server
    client = openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0, timeout=120)

    completion = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Compute 12 * 7 with the calculator."}],
        tool_choice={"type": "function", "function": {"name": "calculator"}},
        max_tokens=48,
    )

    detail = httpx.get(
        f"{base}/api/v1/conversations/{completion.model_extra['conversation_id']}",  # type: ignore[index]
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    ).json()
    calls = detail["tool_calls"]
    assert calls, "the grammar-constrained step must produce a call"
    for call in calls:
        assert call["name"] == "calculator"
        arguments = json.loads(call["arguments"])
        assert isinstance(arguments["expression"], str)
        assert arguments["expression"]
