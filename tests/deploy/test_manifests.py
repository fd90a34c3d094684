"""Invariants of deploy/: the rendered Kubernetes overlays, the compose file and the Dockerfile.

``make deploy-check`` runs the validators (kubernetes-validate strict, checkov, hadolint); these
tests pin down what the validators do not know is ours to promise: every container locked
down, probes on /healthz and /readyz, default-deny egress, no inline secrets, and a sandbox
NetworkPolicy that selects exactly what the Kubernetes sandbox backend labels its Pods with.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from obsigen.sandbox.interfaces import Limits
from obsigen.sandbox.kubernetes import SANDBOX_LABELS, PodSettings, pod_manifest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
Obj = dict[str, Any]


def _renderer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("render_k8s", ROOT / "scripts" / "render-k8s.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


RENDER = _renderer()
OVERLAYS = sorted(p.name for p in (DEPLOY / "k8s" / "overlays").iterdir())


@pytest.fixture(params=OVERLAYS)
def objects(request: pytest.FixtureRequest) -> list[Obj]:
    rendered: list[Obj] = RENDER.render(DEPLOY / "k8s" / "overlays" / request.param)
    return rendered


def _pods(objects: list[Obj]) -> list[tuple[str, Obj]]:
    return [
        (o["metadata"]["name"], o["spec"]["template"]["spec"])
        for o in objects
        if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job")
    ]


def _of(objects: list[Obj], kind: str, name: str, namespace: str = "obsigen") -> Obj:
    (found,) = [
        o
        for o in objects
        if o["kind"] == kind
        and o["metadata"]["name"] == name
        and o["metadata"].get("namespace", namespace) == namespace
    ]
    return found


def test_every_overlay_validates_strictly(objects: list[Obj]) -> None:
    assert RENDER.validate(objects, "1.31.0") == []


def test_the_validator_refuses_a_wrong_manifest(objects: list[Obj]) -> None:
    broken = [dict(o) for o in objects]
    api = _of(broken, "Deployment", "obsigen-api")
    api["spec"] = {**api["spec"], "replica": 3}  # a typo strict validation must catch
    assert any("replica" in problem for problem in RENDER.validate(broken, "1.31.0"))


def test_every_container_is_locked_down(objects: list[Obj]) -> None:
    for name, pod in _pods(objects):
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod.get("automountServiceAccountToken") is False, name
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"] == {"drop": ["ALL"]}, name
            assert {"cpu", "memory"} <= set(container["resources"]["limits"]), name
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), name


def test_api_probes_health_and_readiness(objects: list[Obj]) -> None:
    (container,) = _of(objects, "Deployment", "obsigen-api")["spec"]["template"]["spec"][
        "containers"
    ]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_api_has_autoscaling_and_a_disruption_budget(objects: list[Obj]) -> None:
    hpa = _of(objects, "HorizontalPodAutoscaler", "obsigen-api")
    pdb = _of(objects, "PodDisruptionBudget", "obsigen-api")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "obsigen-api"
    assert 1 <= pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]


def test_namespaces_enforce_restricted(objects: list[Obj]) -> None:
    namespaces = [o for o in objects if o["kind"] == "Namespace"]
    assert {n["metadata"]["name"] for n in namespaces} == {"obsigen", "obsigen-sandbox"}
    for namespace in namespaces:
        assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_default_deny_both_ways_in_both_namespaces(objects: list[Obj]) -> None:
    for namespace in ("obsigen", "obsigen-sandbox"):
        deny = _of(objects, "NetworkPolicy", "default-deny", namespace)
        assert deny["spec"]["podSelector"] == {}
        assert set(deny["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        assert "egress" not in deny["spec"]
        assert "ingress" not in deny["spec"]


def test_egress_allowed_only_to_declared_endpoints(objects: list[Obj]) -> None:
    for policy in (o for o in objects if o["kind"] == "NetworkPolicy"):
        for rule in policy["spec"].get("egress", []):
            # Every rule names where and which port: no "to anywhere" and no "any port".
            assert rule.get("to"), policy["metadata"]["name"]
            assert rule.get("ports"), policy["metadata"]["name"]
            for peer in rule["to"]:
                assert peer.get("ipBlock", {}).get("cidr") != "0.0.0.0/0"


def test_sandbox_policy_selects_the_backends_pods_and_allows_nothing(objects: list[Obj]) -> None:
    policy = _of(objects, "NetworkPolicy", "sandbox-deny-all", "obsigen-sandbox")
    assert policy["spec"]["podSelector"]["matchLabels"] == SANDBOX_LABELS
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert not policy["spec"].get("egress")
    assert not policy["spec"].get("ingress")
    pod = pod_manifest("obsigen-sbx-x", PodSettings("obsigen-sandbox", "img"), Limits(), [])
    assert SANDBOX_LABELS.items() <= pod["metadata"]["labels"].items()
    assert pod["spec"]["runtimeClassName"] == "gvisor"
    assert pod["spec"]["automountServiceAccountToken"] is False
    # The Pod the backend makes passes the same strict schema as the manifests.
    assert RENDER.validate([pod], "1.31.0") == []


def test_runtime_class_and_the_configured_sandbox_agree(objects: list[Obj]) -> None:
    runtime_class = _of(objects, "RuntimeClass", "gvisor", "")
    assert runtime_class["handler"] == "runsc"
    config = _of(objects, "ConfigMap", "obsigen-config")["data"]["obsigen.toml"]
    assert 'backend = "kubernetes"' in config
    assert 'k8s_runtime_class = "gvisor"' in config


def test_sandbox_role_is_narrow(objects: list[Obj]) -> None:
    role = _of(objects, "Role", "obsigen-sandbox-runner", "obsigen-sandbox")
    verbs = {verb for rule in role["rules"] for verb in rule["verbs"]}
    resources = {res for rule in role["rules"] for res in rule["resources"]}
    assert verbs <= {"create", "get", "delete"}
    assert resources == {"pods", "configmaps", "pods/log"}


def test_no_inline_secrets(objects: list[Obj]) -> None:
    assert not [o for o in objects if o["kind"] == "Secret"]
    (external,) = [o for o in objects if o["kind"] == "ExternalSecret"]
    assert external["spec"]["secretStoreRef"]["kind"] == "ClusterSecretStore"
    for _, pod in _pods(objects):
        for container in pod["containers"]:
            for env in container.get("env", []):
                if "value" in env:
                    assert not re.search(r"(?i)pass|secret|key|token", env["name"]), env
                else:
                    assert env["valueFrom"]["secretKeyRef"]["name"] == "obsigen-secrets"


# --- compose and Dockerfile ---------------------------------------------------------------------


def test_compose_has_the_whole_platform_and_no_secret_values() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"api", "worker", "mariadb", "redis", "minio", "otel-collector", "migrate"} <= set(
        services
    )
    for name in ("api", "worker", "migrate"):
        service = services[name]
        assert service["read_only"] is True
        assert service["user"] == "10001:10001"
        assert service["cap_drop"] == ["ALL"]
    text = (DEPLOY / "compose.yaml").read_text()
    # Every credential is interpolated from deploy/.env, which is never committed.
    for match in re.finditer(r"(?im)^\s*[A-Z_]*(PASSWORD|SECRET)[A-Z_]*:\s*(\S+)", text):
        assert match.group(2).startswith("${"), match.group(0)


def _stages(dockerfile: str) -> list[str]:
    return re.split(r"(?m)^FROM ", dockerfile)[1:]


def test_dockerfile_final_stage_is_non_root_without_compilers() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    stages = _stages(dockerfile)
    assert len(stages) >= 2, "multi-stage"
    final = stages[-1]
    assert re.search(r"(?m)^USER 10001", final)
    for tool in ("build-essential", "gcc", "g++", "cmake", "clang"):
        assert tool not in final, tool
    assert "runsc=" in final
    assert not re.search(r"(?m)^(ENV|ARG) .*(PASSWORD|SECRET|TOKEN)", dockerfile)
    base = re.search(r"(?m)^ARG PYTHON_IMAGE=(\S+)", dockerfile)
    assert base is not None
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", base.group(1))


def test_shipped_configurations_load(tmp_path: Path, objects: list[Obj]) -> None:
    from obsigen.config import load_settings

    pilot = load_settings(DEPLOY / "obsigen.toml")
    assert pilot.storage.database_password.startswith("env:")
    toml = tmp_path / "obsigen.toml"
    toml.write_text(_of(objects, "ConfigMap", "obsigen-config")["data"]["obsigen.toml"])
    cluster = load_settings(toml)
    assert cluster.sandbox.backend == "kubernetes"
    assert cluster.sandbox.k8s_image
