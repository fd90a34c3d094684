"""Must-show: scim2-tester's whole check suite against a live ``obsigen serve``.

The server is a real process on a free 127.0.0.1 port, set up as an operator would: migrate,
create a tenant, ``obsigen scim token create --json``. scim2-tester then discovers the service
(ServiceProviderConfig, ResourceTypes, Schemas) and runs every check it has: creation, reads,
queries with attributes, replacement, PATCH add/replace/remove and deletion of Users (with
the enterprise extension) and Groups, and the error answers.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import httpx2
import pytest
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server

OBSIGEN = Path(sys.executable).parent / "obsigen"
PASSING = {Status.SUCCESS, Status.COMPLIANT, Status.ACCEPTABLE}


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
def live_scim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    data_dir = tmp_path_factory.mktemp("scim-live") / "var"
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("OBSIGEN_")}
    env["OBSIGEN_PATHS__DATA_DIR"] = str(data_dir)
    # The checker sends a few hundred requests in seconds, as an IdP's first sync does.
    env["OBSIGEN_RATELIMIT__DEFAULT"] = "100000/minute"
    # No model is needed for provisioning (and /healthz, not /readyz, is awaited): inference
    # points at a closed port.
    env["OBSIGEN_INFERENCE__PROVIDER"] = "openai"
    env["OBSIGEN_INFERENCE__BASE_URL"] = "http://127.0.0.1:9/v1"
    env["OBSIGEN_INFERENCE__REGION"] = "de"
    _cli(env, "migrate")
    _cli(env, "tenant", "create", "acme")
    created = json.loads(_cli(env, "scim", "token", "create", "--tenant", "acme", "--json"))
    assert created["token"].startswith("scim_")
    port = _free_port()
    log_path = data_dir.parent / "server.log"
    log = log_path.open("w")
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
            assert process.poll() is None, log_path.read_text()[-3000:]
            try:
                if httpx.get(f"{base}/healthz", timeout=30).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "obsigen serve did not come up"
            time.sleep(0.2)
        yield f"{base}/scim/v2", created["token"]
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


def test_scim2_tester_passes_every_check(live_scim: tuple[str, str]) -> None:
    base_url, token = live_scim
    with httpx2.Client(
        base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as http:
        results = check_server(SyncSCIMClient(http))
    counts = Counter(result.status.name for result in results)
    print(f"scim2-tester: {len(results)} checks: {dict(sorted(counts.items()))}")
    failed = [
        f"{r.resource_type or '-'} {r.title}: {r.status.name} {r.reason}"
        for r in results
        if r.status not in PASSING
    ]
    assert len(results) >= 40, "too few checks ran: did discovery fail?"
    assert failed == [], "\n".join(failed)


def test_the_live_server_refuses_a_wrong_token(live_scim: tuple[str, str]) -> None:
    base_url, token = live_scim
    wrong = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    response = httpx.get(f"{base_url}/Users", headers={"Authorization": f"Bearer {wrong}"})
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/scim+json")
    assert response.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
