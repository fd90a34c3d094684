"""The three latency targets: the fake upstream alone, Obsigen in front of it, LiteLLM in front."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.procs import (
    LOOPBACK,
    BenchError,
    Server,
    clean_env,
    free_port,
    run_checked,
    start_ready,
)

REPO = Path(__file__).resolve().parent.parent
MODEL = "fake-model"

# 1.110.x needs `litellm-proxy`, 1.109.x and 1.108.8+ need extras releases that the package
# registry reachable here does not serve; 1.108.7 is the newest whose [proxy] extra installs.
LITELLM_REQUIREMENT = "litellm[proxy]==1.108.7"
LITELLM_VENV = REPO / "bench" / ".venv-litellm"
LITELLM_MASTER_KEY = "sk-bench-litellm"


@dataclass
class Target:
    name: str
    url: str
    api_key: str
    server: Server | None  # None when the target is the upstream itself


def python_bin() -> Path:
    return Path(sys.executable)


def start_fake_upstream(workdir: Path) -> Server:
    port = free_port()
    return start_ready(
        "fake upstream",
        [str(python_bin()), "-m", "bench.fake_upstream", "--port", str(port)],
        env=clean_env({}),
        log_path=workdir / "fake_upstream.log",
        url=f"http://{LOOPBACK}:{port}",
        cwd=REPO,
        ready_path="/v1/models",
        timeout_s=30,
    )


# --- Obsigen -------------------------------------------------------------------------------


def obsigen_env(data_dir: Path, upstream_url: str) -> dict[str, str]:
    return clean_env(
        {
            "OBSIGEN_PATHS__DATA_DIR": str(data_dir),
            "OBSIGEN_INFERENCE__PROVIDER": "openai",
            "OBSIGEN_INFERENCE__BASE_URL": f"{upstream_url}/v1",
            "OBSIGEN_INFERENCE__MODEL": MODEL,
            "OBSIGEN_INFERENCE__REGION": "de",
            # The default limits (120/minute) would answer most of a run with 429; the limiter
            # still runs on every request, so its cost stays in the measurement.
            "OBSIGEN_RATELIMIT__DEFAULT": "1000000/minute",
            "OBSIGEN_RATELIMIT__ENDPOINTS": json.dumps({"/v1/chat/completions": "1000000/minute"}),
            "OBSIGEN_RATELIMIT__PRINCIPAL": "1000000/minute",
            "OBSIGEN_RATELIMIT__TENANT": "1000000/minute",
            "OBSIGEN_RATELIMIT__TOKEN_BUDGET_TENANT": "unlimited",
            "OBSIGEN_RATELIMIT__TOKEN_BUDGET_USER": "unlimited",
        }
    )


def obsigen_bin() -> Path:
    path = python_bin().parent / "obsigen"
    if not path.exists():
        raise BenchError(f"{path} is missing: install the project first (make run / uv sync)")
    return path


def _last_json_line(output: str) -> dict[str, str]:
    for line in reversed(output.strip().splitlines()):
        if line.startswith("{"):
            parsed: dict[str, str] = json.loads(line)
            return parsed
    raise BenchError(f"expected a JSON object on stdout, got:\n{output}")


def provision_obsigen(env: dict[str, str]) -> str:
    """Migrate a fresh data dir and create a tenant and an API key; returns the key."""
    cli = str(obsigen_bin())
    run_checked([cli, "migrate"], env=env, cwd=REPO, timeout_s=120)
    run_checked([cli, "tenant", "create", "bench", "--json"], env=env, cwd=REPO, timeout_s=60)
    created = run_checked(
        [
            cli,
            "apikey",
            "create",
            "--tenant",
            "bench",
            "--name",
            "bench",
            "--role",
            "member",
            "--json",
        ],
        env=env,
        cwd=REPO,
        timeout_s=60,
    )
    return _last_json_line(created)["key"]


def start_obsigen(workdir: Path, upstream_url: str) -> Target:
    env = obsigen_env(workdir / "obsigen-data", upstream_url)
    key = provision_obsigen(env)
    port = free_port()
    server = start_ready(
        "Obsigen",
        [str(obsigen_bin()), "serve", "--host", LOOPBACK, "--port", str(port)],
        env=env,
        log_path=workdir / "obsigen.log",
        url=f"http://{LOOPBACK}:{port}",
        cwd=REPO,
        ready_path="/readyz",
        timeout_s=120,
    )
    return Target("obsigen", server.url, key, server)


# --- LiteLLM -------------------------------------------------------------------------------


def litellm_bin() -> Path:
    return LITELLM_VENV / "bin" / "litellm"


def litellm_version() -> str:
    done = subprocess.run(
        [str(LITELLM_VENV / "bin" / "python"), "-m", "pip", "show", "litellm"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    for line in done.stdout.splitlines():
        if line.startswith("Version:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def ensure_litellm() -> None:
    """Create LiteLLM's own venv on first use: its pins must not touch the project's."""
    if litellm_bin().exists() and litellm_version() == LITELLM_REQUIREMENT.split("==")[1]:
        return
    print(f"installing {LITELLM_REQUIREMENT} into {LITELLM_VENV} (first run only)", flush=True)
    # pip keeps the caller's environment: it may need the registry settings found there.
    env = dict(os.environ)
    venv_python = LITELLM_VENV / "bin" / "python"
    if not venv_python.exists():
        run_checked(
            [sys.executable, "-m", "venv", str(LITELLM_VENV)], env=env, cwd=REPO, timeout_s=120
        )
    pip = [str(venv_python), "-m", "pip", "install", "--quiet", LITELLM_REQUIREMENT]
    run_checked(pip, env=env, cwd=REPO, timeout_s=900)


def litellm_config(upstream_url: str) -> str:
    # JSON is valid YAML, and it spares the bench a YAML dependency.
    config = {
        "model_list": [
            {
                "model_name": MODEL,
                "litellm_params": {
                    "model": f"openai/{MODEL}",
                    "api_base": f"{upstream_url}/v1",
                    "api_key": "fake",
                },
            }
        ],
        "litellm_settings": {"telemetry": False, "callbacks": []},
        # A master key and no database: LiteLLM's stateless mode, which checks the key and
        # persists nothing (no spend logs, no audit) — lighter work than Obsigen does per turn.
        "general_settings": {"master_key": LITELLM_MASTER_KEY},
    }
    return json.dumps(config, indent=2)


def litellm_env() -> dict[str, str]:
    return clean_env(
        {
            "LITELLM_TELEMETRY": "False",
            # The model cost map is fetched from the Internet unless told to use the bundled one.
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "LITELLM_DONT_SHOW_FEEDBACK_BOX": "True",
        }
    )


def start_litellm(workdir: Path, upstream_url: str) -> Target:
    ensure_litellm()
    config = workdir / "litellm.yaml"
    config.write_text(litellm_config(upstream_url))
    port = free_port()
    server = start_ready(
        "LiteLLM",
        [str(litellm_bin()), "--config", str(config), "--host", LOOPBACK, "--port", str(port)],
        env=litellm_env(),
        log_path=workdir / "litellm.log",
        url=f"http://{LOOPBACK}:{port}",
        cwd=workdir,
        ready_path="/health/liveliness",
        timeout_s=180,
    )
    return Target("litellm", server.url, LITELLM_MASTER_KEY, server)
