"""Kubernetes backend: each run is its own Pod under gVisor, made through the Kubernetes API.

For clusters, where the API process runs non-root and cannot start ``runsc`` itself. A run is
a ConfigMap (the code, the inputs, :mod:`obsigen.sandbox.pod_entry` and its spec) and a Pod with
``runtimeClassName: gvisor``, no service account token, no service links, a restricted security
context, resource limits, ``activeDeadlineSeconds`` and the label that the deny-all
NetworkPolicy in ``deploy/k8s`` selects (no ingress, no egress, not even DNS). The server polls
the Pod until it ends, reads the result line from its log, and deletes both objects whatever
happened. Only the API is spoken here (httpx); there is no kubectl and no client library.

Limits are the Pod's: memory and CPU are container limits (an OOM kill ends the Pod with reason
``OOMKilled``), the writable directories are ``emptyDir`` volumes with a ``sizeLimit`` (past it
the kubelet evicts the Pod), processes, open files, file size and CPU seconds are rlimits set by
the entry script. A ConfigMap holds at most 1 MiB, so code and inputs together are capped at
:data:`MAX_PAYLOAD_BYTES` on this backend.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import math
import os
import secrets
import ssl
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from obsigen.sandbox import artifacts, pod_entry, runtime
from obsigen.sandbox.interfaces import (
    Artifact,
    BackendName,
    KilledReason,
    Limits,
    RunRequest,
    RunResult,
    SandboxFailed,
    SandboxInputError,
    SandboxUnavailable,
)
from obsigen.sandbox.workspace import SANDBOX_GID, SANDBOX_UID, check_file_name

log = logging.getLogger(__name__)

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# The NetworkPolicy ``sandbox-deny-all`` (deploy/k8s/base/sandbox) selects exactly these labels.
SANDBOX_LABELS = {
    "app.kubernetes.io/name": "obsigen",
    "app.kubernetes.io/component": "sandbox",
}
RUN_LABEL = "obsigen.eu/sandbox-run"
SANDBOX_ROOT = "/sandbox"
# ConfigMaps are capped at 1 MiB by the API server; base64 and the entry script take the rest.
MAX_PAYLOAD_BYTES = 700 * 1024
# Artifacts come back base64-encoded in the Pod log; kubelets rotate logs at 10 MiB by default.
RESULT_BYTES = 4 * 1024 * 1024
# Scheduling, image pull (cached after the first run) and start, on top of the run's own time.
START_ALLOWANCE_S = 60.0
POLL_INTERVAL_S = 0.2
API_TIMEOUT_S = 10.0
_KILLED: frozenset[str] = frozenset({"timeout", "memory", "output_limit", "file_size", "cpu_time"})


class KubeApi:
    """The few Kubernetes API calls a run needs; errors become :class:`SandboxFailed`."""

    def __init__(
        self,
        base_url: str,
        *,
        token_path: Path | None = None,
        ca_path: Path | None = None,
    ) -> None:
        verify: ssl.SSLContext | bool = True
        if ca_path is not None:
            verify = ssl.create_default_context(cafile=str(ca_path))
        self._token_path = token_path
        self._client = httpx.AsyncClient(base_url=base_url, verify=verify, timeout=API_TIMEOUT_S)

    @classmethod
    def in_cluster(cls) -> KubeApi:
        """The API server from inside a Pod: its service variables, token and CA."""
        host = os.environ.get("KUBERNETES_SERVICE_HOST")
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        token, ca = SERVICE_ACCOUNT_DIR / "token", SERVICE_ACCOUNT_DIR / "ca.crt"
        if not host or not token.is_file() or not ca.is_file():
            raise SandboxUnavailable(
                "sandbox backend 'kubernetes': not running in a cluster (no service account "
                "token or KUBERNETES_SERVICE_HOST); set sandbox.k8s_api_url"
            )
        if ":" in host:
            host = f"[{host}]"
        return cls(f"https://{host}:{port}", token_path=token, ca_path=ca)

    def _headers(self) -> dict[str, str]:
        if self._token_path is None:
            return {}
        # Read each time: projected tokens are rotated by the kubelet while we run.
        return {"Authorization": f"Bearer {self._token_path.read_text().strip()}"}

    async def request(
        self, method: str, path: str, *, body: dict[str, Any] | None = None, **params: str
    ) -> httpx.Response:
        try:
            response = await self._client.request(
                method, path, json=body, params=params or None, headers=self._headers()
            )
        except (httpx.HTTPError, OSError) as exc:
            raise SandboxFailed(f"Kubernetes API unreachable: {type(exc).__name__}") from None
        return response

    async def call(
        self, method: str, path: str, *, body: dict[str, Any] | None = None, **params: str
    ) -> httpx.Response:
        response = await self.request(method, path, body=body, **params)
        if response.status_code >= 400:
            raise SandboxFailed(
                f"Kubernetes API {method} {path.rsplit('/', 2)[-2]}: HTTP {response.status_code}"
            )
        return response

    async def delete(self, path: str) -> None:
        """Delete now; an object already gone is fine, anything else is logged, not raised."""
        try:
            response = await self.request(
                "DELETE", path, gracePeriodSeconds="0", propagationPolicy="Background"
            )
        except SandboxFailed as exc:
            log.warning("could not delete %s: %s", path, exc)
            return
        if response.status_code >= 400 and response.status_code != 404:
            log.warning("could not delete %s: HTTP %d", path, response.status_code)

    async def aclose(self) -> None:
        await self._client.aclose()


@dataclass(frozen=True, slots=True)
class PodSettings:
    namespace: str
    image: str
    runtime_class: str = "gvisor"


def _rlimits(limits: Limits) -> dict[str, int]:
    cpu_seconds = max(1, math.ceil(limits.wall_time_s * max(limits.cpus, 1.0)) + 1)
    return {
        "RLIMIT_NPROC": limits.pids,
        "RLIMIT_NOFILE": limits.open_files,
        "RLIMIT_FSIZE": limits.file_size_mb * 1024 * 1024,
        "RLIMIT_CPU": cpu_seconds,
        "RLIMIT_CORE": 0,
    }


def entry_spec(limits: Limits, nonce: str) -> dict[str, Any]:
    """What :mod:`pod_entry` reads: where things are and the limits of this run."""
    return {
        "nonce": nonce,
        "code_path": f"{SANDBOX_ROOT}/code.py",
        "workdir": runtime.WORKDIR,
        "output_dir": runtime.OUTPUT_DIR,
        "env": list(runtime.ENV),
        "rlimits": _rlimits(limits),
        "wall_time_s": limits.wall_time_s,
        "output_bytes": limits.output_bytes,
        "max_artifacts": limits.max_artifacts,
        "result_bytes": min(RESULT_BYTES, limits.artifact_bytes * 2),
    }


def configmap_manifest(
    name: str, settings: PodSettings, request: RunRequest, spec: dict[str, Any]
) -> dict[str, Any]:
    binary = {
        f"in-{i}": base64.b64encode(data).decode() for i, data in enumerate(request.files.values())
    }
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": settings.namespace,
            "labels": {**SANDBOX_LABELS, RUN_LABEL: name},
        },
        "immutable": True,
        "data": {
            "code.py": request.code,
            "entry.py": Path(pod_entry.__file__).read_text(encoding="utf-8"),
            "spec.json": json.dumps(spec),
        },
        "binaryData": binary,
    }


def _empty_dir(name: str, size_mb: int) -> dict[str, Any]:
    return {"name": name, "emptyDir": {"sizeLimit": f"{size_mb}Mi"}}


def pod_manifest(
    name: str, settings: PodSettings, limits: Limits, file_names: list[str]
) -> dict[str, Any]:
    """The Pod of one run: gVisor, no token, no network (by label), restricted, limited."""
    cpu = f"{max(1, int(limits.cpus * 1000))}m"
    resources = {"cpu": cpu, "memory": f"{limits.memory_mb}Mi"}
    storage = f"{limits.workspace_mb * 3 + 16}Mi"
    deadline = math.ceil(limits.wall_time_s + START_ALLOWANCE_S) + 5
    mounts = [
        {"name": "program", "mountPath": SANDBOX_ROOT, "readOnly": True},
        {"name": "input", "mountPath": runtime.INPUT_DIR, "readOnly": True},
        {"name": "workspace", "mountPath": runtime.WORKDIR},
        {"name": "output", "mountPath": runtime.OUTPUT_DIR},
        {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - the run's own emptyDir
    ]
    program_items = [{"key": key, "path": key} for key in ("code.py", "entry.py", "spec.json")]
    input_items = [{"key": f"in-{i}", "path": file} for i, file in enumerate(file_names)]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": settings.namespace,
            "labels": {**SANDBOX_LABELS, RUN_LABEL: name},
        },
        "spec": {
            "runtimeClassName": settings.runtime_class,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "restartPolicy": "Never",
            "activeDeadlineSeconds": deadline,
            "terminationGracePeriodSeconds": 0,
            "hostNetwork": False,
            "hostPID": False,
            "hostIPC": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": SANDBOX_UID,
                "runAsGroup": SANDBOX_GID,
                "fsGroup": SANDBOX_GID,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "run",
                    "image": settings.image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": [runtime.PYTHON, "-I", f"{SANDBOX_ROOT}/entry.py"],
                    "args": [f"{SANDBOX_ROOT}/spec.json"],
                    "workingDir": runtime.WORKDIR,
                    "env": [
                        {"name": key, "value": value}
                        for key, value in (item.split("=", 1) for item in runtime.ENV)
                    ],
                    "resources": {
                        "requests": {**resources, "ephemeral-storage": storage},
                        "limits": {**resources, "ephemeral-storage": storage},
                    },
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "privileged": False,
                        "readOnlyRootFilesystem": True,
                        "runAsNonRoot": True,
                        "capabilities": {"drop": ["ALL"]},
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "volumeMounts": mounts,
                }
            ],
            "volumes": [
                {
                    "name": "program",
                    "configMap": {"name": name, "items": program_items, "defaultMode": 0o444},
                },
                # No items would project every key (the program too): no files, no ConfigMap.
                {
                    "name": "input",
                    "configMap": {"name": name, "items": input_items, "defaultMode": 0o444},
                }
                if input_items
                else {"name": "input", "emptyDir": {"sizeLimit": "1Mi"}},
                _empty_dir("workspace", limits.workspace_mb),
                _empty_dir("output", limits.workspace_mb),
                _empty_dir("tmp", limits.workspace_mb),
            ],
        },
    }


def _terminated(pod: dict[str, Any]) -> dict[str, Any]:
    for status in pod.get("status", {}).get("containerStatuses", []) or []:
        state = status.get("state", {}).get("terminated")
        if state:
            return dict(state)
    return {}


def _b64(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise SandboxFailed(f"the sandbox result's {what} is malformed")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise SandboxFailed(f"the sandbox result's {what} is malformed") from None


def parse_result(log_text: str, nonce: str) -> dict[str, Any] | None:
    """The last result line of this run in ``log_text``, decoded; None when there is none."""
    prefix = f"{pod_entry.RESULT_PREFIX}:{nonce}:"
    for line in reversed(log_text.splitlines()):
        if line.startswith(prefix):
            try:
                decoded = json.loads(_b64(line[len(prefix) :], "line"))
            except json.JSONDecodeError:
                raise SandboxFailed("the sandbox result is not JSON") from None
            if not isinstance(decoded, dict):
                raise SandboxFailed("the sandbox result is not an object")
            return decoded
    return None


def _safe_parts(parts: list[str]) -> bool:
    if len(parts) > artifacts.MAX_DEPTH:
        return False
    try:
        for part in parts:
            check_file_name(part)
    except SandboxInputError:
        return False
    return True


def _artifacts(entries: object, limits: Limits) -> tuple[tuple[Artifact, ...], tuple[str, ...]]:
    """Write what the pod returned into a private directory and filter it like every backend."""
    if not isinstance(entries, list):
        raise SandboxFailed("the sandbox result's artifacts are malformed")
    rejected: list[str] = []
    with tempfile.TemporaryDirectory(prefix="obsigen-k8s-out-") as tmp:
        root = Path(tmp)
        for entry in entries[: limits.max_artifacts + 1]:
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                raise SandboxFailed("the sandbox result's artifacts are malformed")
            name: str = entry["name"]
            parts = name.split("/")
            if not _safe_parts(parts):
                # Never a path outside ``root``: "..", absolute and odd names are refused here.
                rejected.append(f"{name[:64]}: name not allowed")
                continue
            target = root.joinpath(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(_b64(entry.get("data"), "artifact"))
        found, refused = artifacts.collect(root, limits)
    return found, (*rejected, *refused)


def _text(data: bytes, cap: int) -> tuple[str, bool]:
    return data[:cap].decode("utf-8", errors="replace"), len(data) > cap


def to_result(decoded: dict[str, Any], limits: Limits, duration_ms: int) -> RunResult:
    """A :class:`RunResult` from the pod's (untrusted) result, every field checked and capped."""
    exit_code = decoded.get("exit_code")
    if not isinstance(exit_code, int) or isinstance(exit_code, bool):
        raise SandboxFailed("the sandbox result has no exit code")
    reason = decoded.get("killed_reason")
    killed: KilledReason | None = reason if reason in _KILLED else None
    stdout, out_cut = _text(_b64(decoded.get("stdout", ""), "stdout"), limits.output_bytes)
    stderr, err_cut = _text(_b64(decoded.get("stderr", ""), "stderr"), limits.output_bytes)
    found, rejected = _artifacts(decoded.get("artifacts", []), limits)
    pod_rejected = decoded.get("rejected", [])
    if not isinstance(pod_rejected, list):
        pod_rejected = []
    return RunResult(
        stdout=stdout,
        stderr=stderr,
        exit_code=exit_code,
        duration_ms=duration_ms,
        backend="kubernetes",
        timed_out=killed == "timeout",
        killed_reason=killed,
        stdout_truncated=out_cut or decoded.get("stdout_truncated") is True,
        stderr_truncated=err_cut or decoded.get("stderr_truncated") is True,
        artifacts=found,
        rejected_artifacts=(*(str(r)[:200] for r in pod_rejected[:64]), *rejected),
    )


class KubernetesBackend:
    def __init__(self, api: KubeApi, settings: PodSettings) -> None:
        self.api = api
        self.settings = settings

    @property
    def name(self) -> BackendName:
        return "kubernetes"

    async def prepare(self, limits: Limits) -> KubernetesSandbox:
        # Nothing to make ahead: a Pod is created with its code, which is known only at run.
        return KubernetesSandbox(self, limits)

    async def aclose(self) -> None:
        await self.api.aclose()


class KubernetesSandbox:
    def __init__(self, backend: KubernetesBackend, limits: Limits) -> None:
        self._backend = backend
        self.limits = limits
        self.name = f"obsigen-sbx-{secrets.token_hex(8)}"
        self._created: list[str] = []
        self._used = False

    @property
    def _base(self) -> str:
        return f"/api/v1/namespaces/{self._backend.settings.namespace}"

    async def run(self, request: RunRequest) -> RunResult:
        assert not self._used, "a sandbox is used once"
        self._used = True
        payload = len(request.code.encode()) + sum(len(d) for d in request.files.values())
        if payload > MAX_PAYLOAD_BYTES:
            raise SandboxInputError(
                f"code and files larger than {MAX_PAYLOAD_BYTES} bytes together "
                "(the Kubernetes sandbox backend's limit)"
            )
        api, settings, limits = self._backend.api, self._backend.settings, self.limits
        nonce = secrets.token_hex(16)
        configmap = configmap_manifest(self.name, settings, request, entry_spec(limits, nonce))
        pod = pod_manifest(self.name, settings, limits, list(request.files))
        started = time.perf_counter()
        self._created.append(f"{self._base}/configmaps/{self.name}")
        await api.call("POST", f"{self._base}/configmaps", body=configmap)
        self._created.append(f"{self._base}/pods/{self.name}")
        await api.call("POST", f"{self._base}/pods", body=pod)
        status = await self._wait(limits.wall_time_s + START_ALLOWANCE_S)
        duration_ms = int((time.perf_counter() - started) * 1000)
        if status is None:
            return self._stopped("timeout", duration_ms)
        terminated = _terminated(status)
        if terminated.get("reason") == "OOMKilled":
            return self._stopped("memory", duration_ms)
        if status.get("status", {}).get("reason") in ("DeadlineExceeded", "Evicted"):
            # Evicted: an emptyDir went past its sizeLimit, the closest to "disk full" here.
            why: KilledReason = (
                "timeout" if status["status"]["reason"] == "DeadlineExceeded" else "file_size"
            )
            return self._stopped(why, duration_ms)
        logs = await api.call(
            "GET",
            f"{self._base}/pods/{self.name}/log",
            container="run",
            limitBytes=str(RESULT_BYTES * 2 + limits.output_bytes * 4),
        )
        decoded = parse_result(logs.text, nonce)
        if decoded is None:
            raise SandboxFailed(
                f"the sandbox pod ended ({terminated.get('reason', 'unknown')}) without a result"
            )
        return await asyncio.to_thread(to_result, decoded, limits, duration_ms)

    def _stopped(self, reason: KilledReason, duration_ms: int) -> RunResult:
        return RunResult(
            stdout="",
            stderr="",
            exit_code=137,
            duration_ms=duration_ms,
            backend="kubernetes",
            timed_out=reason == "timeout",
            killed_reason=reason,
        )

    async def _wait(self, timeout_s: float) -> dict[str, Any] | None:
        """The Pod once it has ended, or None when it has not within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        path = f"{self._base}/pods/{self.name}"
        while time.monotonic() < deadline:
            pod: dict[str, Any] = (await self._backend.api.call("GET", path)).json()
            status = pod.get("status", {})
            if status.get("phase") in ("Succeeded", "Failed"):
                return pod
            await asyncio.sleep(POLL_INTERVAL_S)
        return None

    async def discard(self) -> None:
        """Delete the Pod and its ConfigMap, whatever state they are in; safe to call twice."""
        created, self._created = self._created, []
        for path in reversed(created):
            with contextlib.suppress(Exception):
                await self._backend.api.delete(path)
