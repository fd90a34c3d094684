"""The Kubernetes sandbox backend against a fake API server on 127.0.0.1 (tests/fakes/kube_api).

The fake runs the Pod's entry script as a local process, so the result protocol, the limits the
entry script enforces, and the clean-up are real; gVisor and NetworkPolicies are not (they are
the cluster's, checked in tests/deploy on the manifests).
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from tests.fakes.kube_api import FakeKube, fake_kube_api

from obsigen.config import SandboxSettings
from obsigen.sandbox import kubernetes
from obsigen.sandbox.factory import build_runner
from obsigen.sandbox.interfaces import (
    Limits,
    RunRequest,
    SandboxFailed,
    SandboxInputError,
    SandboxUnavailable,
)
from obsigen.sandbox.kubernetes import (
    SANDBOX_LABELS,
    KubeApi,
    KubernetesBackend,
    PodSettings,
    parse_result,
    pod_manifest,
    to_result,
)
from obsigen.sandbox.pool import SandboxPool

NAMESPACE = "obsigen-sandbox"
LIMITS = Limits(wall_time_s=10.0, output_bytes=4096)


@pytest.fixture
def token(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(secrets.token_urlsafe(24))
    return path


@pytest.fixture
def kube(token: Path) -> Iterator[FakeKube]:
    with fake_kube_api(token.read_text()) as fake:
        yield fake


@pytest.fixture
async def pool(kube: FakeKube, token: Path) -> AsyncIterator[SandboxPool]:
    api = KubeApi(kube.url, token_path=token)
    backend = KubernetesBackend(api, PodSettings(NAMESPACE, "registry.example.eu/obsigen:1"))
    runner = SandboxPool(backend, LIMITS, size=0, concurrency=2, queue_timeout_s=5)
    yield runner
    await runner.aclose()


async def test_runs_code_and_returns_output_and_artifacts(
    pool: SandboxPool, kube: FakeKube
) -> None:
    code = "import sys\nprint('hello from the pod')\nprint('warn', file=sys.stderr)\n"
    result = await pool.run(RunRequest(code=code))
    await pool.drain()
    assert result.backend == "kubernetes"
    assert result.exit_code == 0
    assert result.stdout == "hello from the pod\n"
    assert result.stderr == "warn\n"
    assert not result.timed_out
    assert kube.live() == []


async def test_artifact_written_to_output_comes_back(pool: SandboxPool, kube: FakeKube) -> None:
    # The fake maps /output into a private directory; the code finds it as its cwd's sibling.
    code = (
        "from pathlib import Path\n"
        "(Path.cwd().parent / 'output' / 'r.csv').write_text('a,b\\n1,2\\n')\n"
    )
    result = await pool.run(RunRequest(code=code))
    assert [(a.name, a.media_type, a.data) for a in result.artifacts] == [
        ("r.csv", "text/csv", b"a,b\n1,2\n")
    ]


async def test_input_files_reach_the_pod_byte_for_byte(pool: SandboxPool, kube: FakeKube) -> None:
    data = bytes(range(256))
    result = await pool.run(RunRequest(code="print(1)", files={"data.bin": data}))
    assert result.exit_code == 0
    pod_dir = next(p for p in kube.root.iterdir() if p.name.startswith("obsigen-sbx-"))
    assert (pod_dir / "input" / "data.bin").read_bytes() == data


async def test_exit_code_and_output_cap(pool: SandboxPool) -> None:
    result = await pool.run(RunRequest(code="print('x' * 100000)\nraise SystemExit(3)"))
    assert result.stdout_truncated
    assert len(result.stdout) <= LIMITS.output_bytes
    assert result.killed_reason == "output_limit"


async def test_timeout_inside_the_pod_is_reported(pool: SandboxPool, kube: FakeKube) -> None:
    limits = Limits(wall_time_s=0.5, output_bytes=4096)
    result = await pool.run(RunRequest(code="import time\ntime.sleep(30)", limits=limits))
    await pool.drain()
    assert result.timed_out
    assert result.killed_reason == "timeout"
    assert kube.live() == []


async def test_pod_that_never_starts_times_out_and_is_deleted(
    pool: SandboxPool, kube: FakeKube, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kubernetes, "START_ALLOWANCE_S", 0.5)
    kube.hold_pending = True
    result = await pool.run(RunRequest(code="print(1)", limits=Limits(wall_time_s=0.2)))
    await pool.drain()
    assert result.timed_out
    assert kube.live() == []
    assert len(kube.deleted) == 2


async def test_oom_killed_pod_is_reported_as_memory(pool: SandboxPool, kube: FakeKube) -> None:
    kube.oom = True
    result = await pool.run(RunRequest(code="print(1)"))
    assert result.killed_reason == "memory"
    assert result.exit_code == 137


async def test_api_refusal_is_a_sandbox_failure_and_leaves_nothing(
    pool: SandboxPool, kube: FakeKube
) -> None:
    kube.fail_create = 403
    with pytest.raises(SandboxFailed, match="HTTP 403"):
        await pool.run(RunRequest(code="print(1)"))
    await pool.drain()
    assert kube.live() == []


async def test_wrong_token_is_refused(kube: FakeKube, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-token")
    api = KubeApi(kube.url, token_path=wrong)
    backend = KubernetesBackend(api, PodSettings(NAMESPACE, "img"))
    runner = SandboxPool(backend, LIMITS, size=0, concurrency=1, queue_timeout_s=1)
    try:
        with pytest.raises(SandboxFailed, match="HTTP 401"):
            await runner.run(RunRequest(code="print(1)"))
    finally:
        await runner.aclose()
    assert kube.created == []


async def test_payload_over_the_configmap_limit_is_refused_before_any_call(
    pool: SandboxPool, kube: FakeKube
) -> None:
    big = b"x" * (kubernetes.MAX_PAYLOAD_BYTES + 1)
    with pytest.raises(SandboxInputError):
        await pool.run(RunRequest(code="print(1)", files={"big.txt": big}))
    assert kube.created == []


def test_pod_is_gvisor_without_token_network_or_privileges() -> None:
    pod = pod_manifest("obsigen-sbx-1", PodSettings(NAMESPACE, "img"), LIMITS, ["a.csv"])
    spec = pod["spec"]
    assert spec["runtimeClassName"] == "gvisor"
    assert spec["automountServiceAccountToken"] is False
    assert spec["enableServiceLinks"] is False
    assert spec["restartPolicy"] == "Never"
    assert spec["activeDeadlineSeconds"] > LIMITS.wall_time_s
    assert SANDBOX_LABELS.items() <= pod["metadata"]["labels"].items()
    assert spec["securityContext"]["runAsNonRoot"] is True
    (container,) = spec["containers"]
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["resources"]["limits"]["memory"] == f"{LIMITS.memory_mb}Mi"
    # Only the runtime's fixed environment: nothing of the server's reaches the run.
    assert {e["name"] for e in container["env"]} >= {"PATH", "HOME"}
    assert not any("valueFrom" in e for e in container["env"])


def test_no_input_files_mount_no_configmap_keys_at_input() -> None:
    pod = pod_manifest("obsigen-sbx-1", PodSettings(NAMESPACE, "img"), LIMITS, [])
    (volume,) = [v for v in pod["spec"]["volumes"] if v["name"] == "input"]
    assert "configMap" not in volume


def _line(nonce: str, payload: dict[str, object]) -> str:
    return f"OBSIGEN-RESULT:{nonce}:{base64.b64encode(json.dumps(payload).encode()).decode()}"


def test_result_artifact_names_cannot_escape(tmp_path: Path) -> None:
    data = base64.b64encode(b"hi").decode()
    decoded = {
        "exit_code": 0,
        "artifacts": [
            {"name": "../../escape.txt", "data": data},
            {"name": "/etc/passwd", "data": data},
            {"name": "ok.txt", "data": data},
        ],
    }
    parsed = parse_result("noise\n" + _line("n1", decoded), "n1")
    assert parsed is not None
    result = to_result(parsed, LIMITS, 1)
    assert [a.name for a in result.artifacts] == ["ok.txt"]
    assert len(result.rejected_artifacts) == 2
    assert not (tmp_path.parent / "escape.txt").exists()


def test_result_of_another_run_or_malformed_is_not_taken() -> None:
    assert parse_result(_line("other", {"exit_code": 0}), "mine") is None
    with pytest.raises(SandboxFailed):
        parse_result("OBSIGEN-RESULT:mine:!!!", "mine")
    with pytest.raises(SandboxFailed):
        to_result({"exit_code": "0"}, LIMITS, 1)


def test_result_streams_are_capped_on_the_server_too() -> None:
    flood = base64.b64encode(b"y" * (LIMITS.output_bytes * 3)).decode()
    result = to_result({"exit_code": 0, "stdout": flood}, LIMITS, 1)
    assert len(result.stdout) == LIMITS.output_bytes
    assert result.stdout_truncated


async def test_factory_builds_the_kubernetes_runner_and_needs_an_image() -> None:
    with fake_kube_api("") as proxy:  # an API URL like `kubectl proxy`'s: no token
        with pytest.raises(SandboxUnavailable, match="k8s_image"):
            build_runner(SandboxSettings(backend="kubernetes", k8s_api_url=proxy.url))
        runner = build_runner(
            SandboxSettings(backend="kubernetes", k8s_api_url=proxy.url, k8s_image="img")
        )
        assert runner is not None
        assert runner.backend == "kubernetes"
        result = await runner.run(RunRequest(code="print(2)"))
        await runner.aclose()
    assert result.stdout == "2\n"


def test_in_cluster_needs_a_service_account(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(SandboxUnavailable, match="not running in a cluster"):
        KubeApi.in_cluster()
