"""A small fake Kubernetes API server on 127.0.0.1 for the Kubernetes sandbox backend.

It speaks the few calls the backend makes (create/get/delete ConfigMaps and Pods, read a Pod's
log), checks the bearer token, and plays kubelet for Pods: it projects the ConfigMap's items
the way the Pod's volumes say, runs the container's entry script as a local process (paths
under ``/sandbox``, ``/workspace``, ``/output`` mapped into a private directory), enforces
``activeDeadlineSeconds``, and reports phase, container state and log. It is a stand-in for a
cluster, not a cluster: gVisor, NetworkPolicies and cgroup limits are not exercised here.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

_PATH = re.compile(
    r"^/api/v1/namespaces/(?P<ns>[a-z0-9-]+)/(?P<kind>pods|configmaps)(?:/(?P<name>[a-z0-9-]+))?(?P<log>/log)?$"
)


@dataclass
class FakePod:
    manifest: dict[str, Any]
    root: Path
    phase: str = "Pending"
    reason: str = ""
    terminated: dict[str, Any] = field(default_factory=dict)
    log: bytes = b""
    process: subprocess.Popen[bytes] | None = None
    started: float = field(default_factory=time.monotonic)


@dataclass
class FakeKube:
    token: str
    root: Path
    configmaps: dict[str, dict[str, Any]] = field(default_factory=dict)
    pods: dict[str, FakePod] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    # Test knobs: the next Pods never start / end as OOM-killed / fail creation with this status.
    hold_pending: bool = False
    oom: bool = False
    fail_create: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def live(self) -> list[str]:
        with self.lock:
            return [*self.configmaps, *self.pods]

    def start_pod(self, pod: FakePod) -> None:
        """Project the volumes and run the container, as the kubelet would."""
        spec = pod.manifest["spec"]
        container = spec["containers"][0]
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        mapped: dict[str, Path] = {}
        for volume in spec["volumes"]:
            target = pod.root / volume["name"]
            target.mkdir(parents=True)
            mapped[mounts[volume["name"]]] = target
            source = volume.get("configMap")
            if source is None:
                continue
            configmap = self.configmaps[source["name"]]
            for item in source["items"]:
                key = item["key"]
                if key in configmap.get("data", {}):
                    data = configmap["data"][key].encode()
                else:
                    data = base64.b64decode(configmap["binaryData"][key])
                (target / item["path"]).write_bytes(data)

        def local(path: str) -> str:
            for mount, target in mapped.items():
                if path == mount or path.startswith(mount + "/"):
                    return str(target) + path[len(mount) :]
            return path

        entry_spec = json.loads((mapped["/sandbox"] / "spec.json").read_text())
        for key in ("code_path", "workdir", "output_dir"):
            entry_spec[key] = local(entry_spec[key])
        (pod.root / "spec.json").write_text(json.dumps(entry_spec))
        argv = [sys.executable, "-I", local(container["command"][2]), str(pod.root / "spec.json")]
        pod.process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        pod.phase = "Running"
        threading.Thread(target=self._watch, args=(pod,), daemon=True).start()

    def _watch(self, pod: FakePod) -> None:
        assert pod.process is not None
        deadline = pod.started + pod.manifest["spec"]["activeDeadlineSeconds"]
        try:
            out, _ = pod.process.communicate(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pod.process.kill()
            out, _ = pod.process.communicate()
            pod.phase, pod.reason = "Failed", "DeadlineExceeded"
            return
        pod.log = out
        if self.oom:
            pod.phase, pod.terminated = "Failed", {"exitCode": 137, "reason": "OOMKilled"}
            return
        code = pod.process.returncode
        pod.phase = "Succeeded" if code == 0 else "Failed"
        pod.terminated = {"exitCode": code, "reason": "Completed" if code == 0 else "Error"}

    def pod_view(self, pod: FakePod) -> dict[str, Any]:
        status: dict[str, Any] = {"phase": pod.phase}
        if pod.reason:
            status["reason"] = pod.reason
        if pod.terminated:
            status["containerStatuses"] = [{"name": "run", "state": {"terminated": pod.terminated}}]
        return {**pod.manifest, "status": status}

    def stop(self) -> None:
        for pod in self.pods.values():
            if pod.process is not None and pod.process.poll() is None:
                pod.process.kill()
                pod.process.wait()


def _handler(kube: FakeKube) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def _send(self, status: int, body: dict[str, Any] | bytes) -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _route(self) -> tuple[re.Match[str], dict[str, list[str]]] | None:
            # An empty token: no authentication, like ``kubectl proxy`` on loopback.
            if kube.token and self.headers.get("Authorization") != f"Bearer {kube.token}":
                self._send(401, {"kind": "Status", "reason": "Unauthorized", "code": 401})
                return None
            url = urlsplit(self.path)
            match = _PATH.match(url.path)
            if match is None:
                self._send(404, {"kind": "Status", "reason": "NotFound", "code": 404})
                return None
            return match, parse_qs(url.query)

        def do_POST(self) -> None:
            routed = self._route()
            if routed is None:
                return
            match, _ = routed
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if kube.fail_create:
                self._send(kube.fail_create, {"kind": "Status", "code": kube.fail_create})
                return
            name = body["metadata"]["name"]
            with kube.lock:
                kube.created.append(f"{match['kind']}/{name}")
                if match["kind"] == "configmaps":
                    kube.configmaps[name] = body
                else:
                    pod = FakePod(body, kube.root / name)
                    kube.pods[name] = pod
                    if not kube.hold_pending:
                        kube.start_pod(pod)
            self._send(201, body)

        def do_GET(self) -> None:
            routed = self._route()
            if routed is None:
                return
            match, query = routed
            pod = kube.pods.get(match["name"] or "")
            if match["kind"] != "pods" or pod is None:
                self._send(404, {"kind": "Status", "code": 404})
                return
            if match["log"]:
                limit = int(query.get("limitBytes", ["0"])[0]) or None
                self._send(200, pod.log[:limit])
                return
            self._send(200, kube.pod_view(pod))

        def do_DELETE(self) -> None:
            routed = self._route()
            if routed is None:
                return
            match, _ = routed
            name = match["name"] or ""
            with kube.lock:
                store: dict[str, Any] = kube.pods if match["kind"] == "pods" else kube.configmaps
                found = store.pop(name, None)
                kube.deleted.append(f"{match['kind']}/{name}")
            if isinstance(found, FakePod) and found.process and found.process.poll() is None:
                found.process.kill()
            self._send(200 if found is not None else 404, {"kind": "Status"})

    return Handler


@contextmanager
def fake_kube_api(token: str) -> Iterator[FakeKube]:
    root = Path(tempfile.mkdtemp(prefix="obsigen-fake-kube-"))
    kube = FakeKube(token=token, root=root)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(kube))
    kube.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield kube
    finally:
        server.shutdown()
        server.server_close()
        kube.stop()
        shutil.rmtree(root, ignore_errors=True)
