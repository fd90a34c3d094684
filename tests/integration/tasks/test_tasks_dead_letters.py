"""Retries with backoff, the dead-letter record, and its admin API (tenant-scoped, MFA)."""

from __future__ import annotations

import pytest
from tests.integration.tasks.conftest import TasksPlatform

from obsigen.authz.permissions import Role


def flaky(calls: list[str], fail_until: list[int]) -> object:
    async def task(tenant_id: str, item: str) -> str:
        calls.append(item)
        if len(calls) <= fail_until[0]:
            raise ConnectionError(f"store down (call {len(calls)})")
        return "ok"

    return task


async def test_a_task_that_keeps_failing_is_retried_then_dead_lettered(
    tasks_platform: TasksPlatform,
) -> None:
    p = tasks_platform
    admin = await p.login(role=Role.ADMIN)
    tenant_id = await p.tenant_id(admin.tenant)
    calls: list[str] = []
    p.queue.register("tests.flaky", flaky(calls, [100]))  # type: ignore[arg-type]
    delays: list[float] = []

    async def no_wait(delay: float) -> None:
        delays.append(delay)

    p.queue.retry.sleep = no_wait
    await p.queue.kick("tests.flaky", tenant_id=tenant_id, item="x")
    await p.queue.join()

    assert calls == ["x", "x", "x"]  # max_attempts = 3
    # Backoff doubles (with jitter between half and the whole of the step).
    assert len(delays) == 2
    assert 0.005 <= delays[0] <= 0.01
    assert 0.01 <= delays[1] <= 0.02
    response = await p.client.get("/api/v1/tasks/dead-letters", headers=p.auth(admin.token))
    assert response.status_code == 200, response.text
    [letter] = response.json()
    assert letter["task"] == "tests.flaky"
    assert letter["attempts"] == 3
    assert letter["status"] == "dead"
    assert letter["arguments"] == {"tenant_id": tenant_id, "item": "x"}
    assert letter["error"] == "ConnectionError: store down (call 3)"


async def test_a_dead_letter_is_sent_again_from_the_api_once(
    tasks_platform: TasksPlatform,
) -> None:
    p = tasks_platform
    admin = await p.login(role=Role.ADMIN)
    tenant_id = await p.tenant_id(admin.tenant)
    calls: list[str] = []
    fail_until = [3]
    p.queue.register("tests.flaky", flaky(calls, fail_until))  # type: ignore[arg-type]
    await p.queue.kick("tests.flaky", tenant_id=tenant_id, item="y")
    await p.queue.join()
    [letter] = (
        await p.client.get("/api/v1/tasks/dead-letters", headers=p.auth(admin.token))
    ).json()

    retried = await p.client.post(
        f"/api/v1/tasks/dead-letters/{letter['id']}/retry", headers=p.auth(admin.token)
    )
    assert retried.status_code == 202, retried.text
    await p.queue.join()
    assert calls == ["y"] * 4  # three failures, then the re-sent task succeeded
    assert retried.json()["status"] == "retried"
    assert retried.json()["retry_task_id"]
    again = await p.client.post(
        f"/api/v1/tasks/dead-letters/{letter['id']}/retry", headers=p.auth(admin.token)
    )
    assert again.status_code == 409
    assert again.json()["type"].endswith("/dead-letter-retried")
    assert len(calls) == 4
    listed = await p.client.get(
        "/api/v1/tasks/dead-letters", params={"status": "retried"}, headers=p.auth(admin.token)
    )
    assert [row["id"] for row in listed.json()] == [letter["id"]]
    events = await p.audit_events(admin.tenant, "admin.change")
    assert any(e["data"].get("target") == "task_dead_letter" for e in events)


async def test_dead_letters_are_refused_to_other_tenants_members_and_password_only_admins(
    tasks_platform: TasksPlatform,
) -> None:
    p = tasks_platform
    admin = await p.login(role=Role.ADMIN)
    tenant_id = await p.tenant_id(admin.tenant)
    p.queue.register("tests.flaky", flaky([], [100]))  # type: ignore[arg-type]
    await p.queue.kick("tests.flaky", tenant_id=tenant_id, item="z")
    await p.queue.join()
    [letter] = (
        await p.client.get("/api/v1/tasks/dead-letters", headers=p.auth(admin.token))
    ).json()
    url = f"/api/v1/tasks/dead-letters/{letter['id']}/retry"

    other = await p.login(role=Role.ADMIN)
    listed = await p.client.get("/api/v1/tasks/dead-letters", headers=p.auth(other.token))
    assert listed.status_code == 200
    assert listed.json() == []
    assert (await p.client.post(url, headers=p.auth(other.token))).status_code == 404

    member = await p.login(admin.tenant, Role.MEMBER)
    assert (await p.client.post(url, headers=p.auth(member.token))).status_code == 403
    no_mfa = await p.login(admin.tenant, Role.ADMIN, mfa=False)
    refused = await p.client.get("/api/v1/tasks/dead-letters", headers=p.auth(no_mfa.token))
    assert refused.status_code == 403
    assert refused.json()["type"].endswith("/mfa-required")
    # Nothing was sent again by the refused calls.
    assert (await p.client.get("/api/v1/tasks/dead-letters", headers=p.auth(admin.token))).json()[
        0
    ]["status"] == "dead"


@pytest.mark.parametrize("status", ["bogus"])
async def test_a_bad_status_filter_is_a_problem_not_a_500(
    tasks_platform: TasksPlatform, status: str
) -> None:
    p = tasks_platform
    admin = await p.login(role=Role.ADMIN)
    response = await p.client.get(
        "/api/v1/tasks/dead-letters", params={"status": status}, headers=p.auth(admin.token)
    )
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
